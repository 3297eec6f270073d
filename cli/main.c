/* main.c - the gomlx command: dispatches to the subcommands. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "gomlx.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *usage;
} commands[] = {
    {"run", cmd_run, "run [MODEL] [--max-tokens N] [--temp T] [--top-p P] [--top-k K] [--seed S] [--raw] \"prompt\""},
    {"chat", cmd_chat, "chat [MODEL]                 interactive chat that keeps the conversation"},
    {"info", cmd_info, "info [MODEL]                 architecture, sizes, quantization, memory estimate"},
    {"logits", cmd_logits, "logits MODEL --ids 1,2,3 --out FILE.npy   float32 logits at every position"},
    {"tokenize", cmd_tokenize, "tokenize MODEL [--special] < text   one JSON array of ids per line"},
    {"bench", cmd_bench, "bench [MODEL] [--json]       prompt/decode speed, time to first token, memory"},
};

static void usage(FILE *f) {
    fprintf(f, "gomlx %s (MLX %s) - run LLMs locally on MLX\n\nusage:\n", gomlx_version(),
            gomlx_mlx_version());
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  gomlx %s\n", commands[i].usage);
    fprintf(f, "\nMODEL is an MLX model folder or a .gguf file; where optional it defaults to\n"
               "the SmolLM2-135M-Instruct model fetched by `make setup`.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        printf("gomlx %s (MLX %s)\n", gomlx_version(), gomlx_mlx_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 2, argv + 2);
    fprintf(stderr, "gomlx: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
