/* cmd_chat.c - placeholder until the subcommand lands. */
#include <stdio.h>

#include "commands.h"

int cmd_chat(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "gomlx chat: not built yet\n");
    return 1;
}
