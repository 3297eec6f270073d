/* commands.h - the gomlx CLI's subcommands; each lives in cli/cmd_<name>.c
 * and gets argv after the subcommand name. Return the process exit code. */
#ifndef GOMLX_CLI_COMMANDS_H
#define GOMLX_CLI_COMMANDS_H

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_bench(int argc, char **argv);

#endif
