/* cmd_tokenize.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "commands.h"

int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gomlx tokenize: not built yet\n");
    return 1;
}
