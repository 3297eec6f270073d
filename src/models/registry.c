/* registry.c - config "model_type" → architecture. A new architecture is
 * one model file and one line here. */
#include <string.h>

#include "models/model.h"

extern const gm_arch gm_arch_llama, gm_arch_mistral, gm_arch_qwen2, gm_arch_gemma2;

static const struct {
    const char *model_type;
    const gm_arch *arch;
} registry[] = {
    {"llama", &gm_arch_llama},
    {"mistral", &gm_arch_mistral},
    {"qwen2", &gm_arch_qwen2},
    {"gemma2", &gm_arch_gemma2},
};

const gm_arch *gm_arch_find(const char *model_type) {
    for (size_t i = 0; i < sizeof registry / sizeof *registry; i++)
        if (!strcmp(registry[i].model_type, model_type)) return registry[i].arch;
    return NULL;
}
