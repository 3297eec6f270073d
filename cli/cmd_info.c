/* cmd_info.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "commands.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gomlx info: not built yet\n");
    return 1;
}
