/* cmd_logits.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "commands.h"

int cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gomlx logits: not built yet\n");
    return 1;
}
