/* cmd_info.c - `gomlx info`: what a model is and what it will cost. */
#include <string.h>

#include "commands.h"
#include "common.h"

int cmd_info(int argc, char **argv) {
    const char *path = argc > 0 ? argv[0] : cli_default_model();
    if (argc > 1) return cli_error("info", "usage: gomlx info [MODEL]");
    gomlx_model *model = cli_load(path, GOMLX_DEVICE_AUTO, -1);
    if (!model) return 1;
    gomlx_model_info in;
    gomlx_model_get_info(model, &in);
    double mb = 1024.0 * 1024.0;
    printf("model:          %s (%s)\n", in.name, in.format);
    printf("architecture:   %s\n", in.architecture);
    printf("parameters:     %.1f M\n", (double)in.num_parameters / 1e6);
    printf("layers:         %d, hidden %d, MLP %d\n", in.num_layers, in.hidden_size, in.intermediate_size);
    printf("attention:      %d heads, %d KV heads, head dim %d\n", in.num_heads, in.num_kv_heads, in.head_dim);
    printf("vocabulary:     %d\n", in.vocab_size);
    printf("context:        %d tokens\n", in.context_length);
    printf("quantization:   %s\n", in.quantization);
    printf("activations:    %s on the %s\n", in.dtype, in.device);
    printf("vision:         %s\n", in.supports_vision ? "yes" : "no");
    printf("weights:        %.1f MiB in memory\n", (double)in.weight_bytes / mb);
    printf("KV cache:       %.1f KiB per token; %.1f MiB at 4096 tokens, %.1f MiB at the full context\n",
           (double)in.kv_bytes_per_token / 1024.0, (double)in.kv_bytes_per_token * 4096 / mb,
           (double)in.kv_bytes_per_token * in.context_length / mb);
    printf("memory estimate: %.1f MiB (weights + KV cache at 4096 tokens)\n",
           ((double)in.weight_bytes + (double)in.kv_bytes_per_token * 4096) / mb);
    if (in.notes && *in.notes) printf("notes:          %s\n", in.notes);
    gomlx_model_free(model);
    return 0;
}
