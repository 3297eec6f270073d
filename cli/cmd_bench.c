/* cmd_bench.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "commands.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gomlx bench: not built yet\n");
    return 1;
}
