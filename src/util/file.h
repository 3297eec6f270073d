/* file.h - small file helpers. */
#ifndef GM_FILE_H
#define GM_FILE_H

#include <stddef.h>

/* Reads a whole file; *out is NUL-terminated and freed with free().
 * Returns 0 or a gomlx_status (message set). */
int gm_read_file(const char *path, char **out, size_t *len);
int gm_file_exists(const char *path);
int gm_is_dir(const char *path);
/* dir + "/" + name into a new string (free()). */
char *gm_path_join(const char *dir, const char *name);

#endif
