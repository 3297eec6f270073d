/* chat.c - the built-in chat formats, written from each family's
 * documented prompt format. */
#include "text/chat.h"

#include <string.h>

#include "util/buf.h"
#include "util/error.h"

gm_chat_format gm_chat_pick(const gm_tokenizer *tok, const char *arch_default) {
    if (tok) {
        if (gm_tokenizer_token_id(tok, "<|im_start|>") >= 0) return GM_CHAT_CHATML;
        if (gm_tokenizer_token_id(tok, "<|start_header_id|>") >= 0) return GM_CHAT_LLAMA3;
        if (gm_tokenizer_token_id(tok, "<start_of_turn>") >= 0) return GM_CHAT_GEMMA;
        if (gm_tokenizer_token_id(tok, "[INST]") >= 0) return GM_CHAT_MISTRAL;
    }
    if (arch_default && !strcmp(arch_default, "chatml")) return GM_CHAT_CHATML;
    if (arch_default && !strcmp(arch_default, "mistral")) return GM_CHAT_MISTRAL;
    if (arch_default && !strcmp(arch_default, "gemma")) return GM_CHAT_GEMMA;
    return GM_CHAT_LLAMA3;
}

const char *gm_chat_format_name(gm_chat_format f) {
    static const char *names[] = {"llama3", "chatml", "mistral", "gemma"};
    return names[f];
}

static const char *role_name(gomlx_role r) {
    return r == GOMLX_ROLE_SYSTEM ? "system" : r == GOMLX_ROLE_USER ? "user" : "assistant";
}

static int render_llama3(gm_buf *b, const gomlx_message *m, int n) {
    int rc = gm_buf_puts(b, "<|begin_of_text|>");
    for (int i = 0; i < n && !rc; i++)
        rc = gm_buf_printf(b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>",
                           role_name(m[i].role), m[i].content);
    return rc ? rc : gm_buf_puts(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static int render_chatml(gm_buf *b, const gomlx_message *m, int n) {
    int rc = 0;
    for (int i = 0; i < n && !rc; i++)
        rc = gm_buf_printf(b, "<|im_start|>%s\n%s<|im_end|>\n", role_name(m[i].role), m[i].content);
    return rc ? rc : gm_buf_puts(b, "<|im_start|>assistant\n");
}

/* Mistral v0.3: no system role; the system text goes before the last user
 * message, as Mistral's own template does. */
static int render_mistral(gm_buf *b, const gomlx_message *m, int n) {
    const char *system = NULL;
    int last_user = -1, rc = gm_buf_puts(b, "<s>");
    for (int i = 0; i < n; i++) {
        if (m[i].role == GOMLX_ROLE_SYSTEM) system = m[i].content;
        if (m[i].role == GOMLX_ROLE_USER) last_user = i;
    }
    for (int i = 0; i < n && !rc; i++) {
        if (m[i].role == GOMLX_ROLE_USER) {
            if (i == last_user && system)
                rc = gm_buf_printf(b, "[INST] %s\n\n%s[/INST]", system, m[i].content);
            else
                rc = gm_buf_printf(b, "[INST] %s[/INST]", m[i].content);
        } else if (m[i].role == GOMLX_ROLE_ASSISTANT) {
            rc = gm_buf_printf(b, "%s</s>", m[i].content);
        }
    }
    return rc;
}

/* Gemma: roles user/model; a system message is folded into the first user turn. */
static int render_gemma(gm_buf *b, const gomlx_message *m, int n) {
    const char *system = NULL;
    int rc = gm_buf_puts(b, "<bos>");
    for (int i = 0; i < n && !rc; i++) {
        if (m[i].role == GOMLX_ROLE_SYSTEM) {
            system = m[i].content;
            continue;
        }
        const char *role = m[i].role == GOMLX_ROLE_USER ? "user" : "model";
        if (system && m[i].role == GOMLX_ROLE_USER) {
            rc = gm_buf_printf(b, "<start_of_turn>%s\n%s\n\n%s<end_of_turn>\n", role, system, m[i].content);
            system = NULL;
        } else {
            rc = gm_buf_printf(b, "<start_of_turn>%s\n%s<end_of_turn>\n", role, m[i].content);
        }
    }
    return rc ? rc : gm_buf_puts(b, "<start_of_turn>model\n");
}

int gm_chat_render(gm_chat_format f, const gomlx_message *msgs, int n, char **out) {
    *out = NULL;
    if (n <= 0 || !msgs) return gm_fail(GOMLX_ERR_INVALID_INPUT, "no messages given");
    for (int i = 0; i < n; i++) {
        if (!msgs[i].content) return gm_fail(GOMLX_ERR_INVALID_INPUT, "message %d has no content", i);
        if (msgs[i].role < GOMLX_ROLE_SYSTEM || msgs[i].role > GOMLX_ROLE_ASSISTANT)
            return gm_fail(GOMLX_ERR_INVALID_INPUT, "message %d has an unknown role %d", i, (int)msgs[i].role);
    }
    gm_buf b = {0};
    int rc;
    switch (f) {
    case GM_CHAT_CHATML: rc = render_chatml(&b, msgs, n); break;
    case GM_CHAT_MISTRAL: rc = render_mistral(&b, msgs, n); break;
    case GM_CHAT_GEMMA: rc = render_gemma(&b, msgs, n); break;
    default: rc = render_llama3(&b, msgs, n); break;
    }
    if (rc) {
        gm_buf_free(&b);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    *out = gm_buf_take(&b);
    return 0;
}
