/* chat.h - built-in chat formats (Llama 3, ChatML, Mistral [INST], Gemma),
 * used until the model's own Jinja template can be rendered. The format is
 * picked from the tokenizer's special tokens, else the architecture. */
#ifndef GM_CHAT_H
#define GM_CHAT_H

#include "gomlx.h"
#include "text/tokenizer.h"

typedef enum { GM_CHAT_LLAMA3, GM_CHAT_CHATML, GM_CHAT_MISTRAL, GM_CHAT_GEMMA } gm_chat_format;

gm_chat_format gm_chat_pick(const gm_tokenizer *tok, const char *arch_default);
const char *gm_chat_format_name(gm_chat_format f);
/* Renders messages and the assistant generation prompt; *out is malloc'ed. */
int gm_chat_render(gm_chat_format f, const gomlx_message *msgs, int n, char **out);

#endif
