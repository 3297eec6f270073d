/* cmd_chat.c - `gomlx chat`: an interactive conversation that keeps its
 * history (and, through the session, its KV cache). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "common.h"

static int print_piece(const char *text, size_t len, void *user) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return 0;
}

typedef struct {
    gomlx_message *items;
    char **owned;
    int n, cap;
} history;

static int push(history *h, gomlx_role role, const char *text) {
    if (h->n == h->cap) {
        int cap = h->cap ? h->cap * 2 : 16;
        gomlx_message *items = realloc(h->items, sizeof *items * (size_t)cap);
        if (!items) return -1;
        h->items = items;
        char **owned = realloc(h->owned, sizeof *owned * (size_t)cap);
        if (!owned) return -1;
        h->owned = owned;
        h->cap = cap;
    }
    char *copy = strdup(text);
    if (!copy) return -1;
    h->owned[h->n] = copy;
    h->items[h->n] = (gomlx_message){role, copy, NULL, 0};
    h->n++;
    return 0;
}

static void clear(history *h, int keep) {
    while (h->n > keep) free(h->owned[--h->n]);
}

int cmd_chat(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *memory_limit = NULL, *cache_limit = NULL;
    gomlx_generate_params p = gomlx_generate_params_default();
    for (int i = 0; i < argc; i++) {
        double fv;
        long long iv;
        if (!strcmp(argv[i], "--system") && i + 1 < argc) system = argv[++i];
        else if (!strcmp(argv[i], "--temp") && i + 1 < argc && !cli_parse_float(argv[i + 1], &fv)) p.temperature = (float)fv, i++;
        else if (!strcmp(argv[i], "--max-tokens") && i + 1 < argc && !cli_parse_int(argv[i + 1], 1, 1 << 24, &iv)) p.max_tokens = (int)iv, i++;
        else if (!strcmp(argv[i], "--memory-limit") && i + 1 < argc) memory_limit = argv[++i];
        else if (!strcmp(argv[i], "--cache-limit") && i + 1 < argc) cache_limit = argv[++i];
        else if (argv[i][0] == '-')
            return cli_error("chat", "usage: gomlx chat [MODEL] [--system TEXT] [--temp T] [--max-tokens N] "
                                     "[--memory-limit BYTES] [--cache-limit BYTES]");
        else model_path = argv[i];
    }
    if (!model_path) model_path = cli_default_model();
    if (cli_set_memory_limits("chat", memory_limit, cache_limit)) return 1;
    gomlx_model *model = cli_load(model_path, GOMLX_DEVICE_AUTO, -1);
    if (!model) return 1;
    gomlx_session *session = NULL;
    if (gomlx_session_new(model, &session) != GOMLX_OK) {
        fprintf(stderr, "gomlx: %s\n", gomlx_last_error());
        gomlx_model_free(model);
        return 1;
    }
    int tty = isatty(0);
    if (tty) fprintf(stderr, "Chatting with %s. /reset starts over, /exit or Ctrl-D quits.\n", model_path);
    history h = {0};
    if (system) push(&h, GOMLX_ROLE_SYSTEM, system);
    int base = h.n, code = 0;
    p.on_token = print_piece;
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) fprintf(stderr, "\n> ");
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            clear(&h, base);
            gomlx_session_reset(session);
            continue;
        }
        if (push(&h, GOMLX_ROLE_USER, line)) break;
        gomlx_result r;
        gomlx_status st = gomlx_generate(session, h.items, h.n, &p, &r);
        printf("\n");
        fflush(stdout);
        if (st != GOMLX_OK) {
            fprintf(stderr, "gomlx: %s\n", gomlx_last_error());
            clear(&h, h.n - 1);
            code = 1;
            continue;
        }
        if (tty) cli_print_stats(stderr, &r.stats);
        push(&h, GOMLX_ROLE_ASSISTANT, r.text);
        gomlx_result_free(&r);
    }
    free(line);
    clear(&h, 0);
    free(h.items);
    free(h.owned);
    gomlx_session_free(session);
    gomlx_model_free(model);
    return code;
}
