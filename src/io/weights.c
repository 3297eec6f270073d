/* weights.c - the named tensor table (open addressing) and safetensors
 * loading from an MLX model folder. */
#include "io/weights.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/file.h"

typedef struct {
    char *name;
    mx_array a;
} slot;

struct gm_weights {
    slot *slots;
    size_t cap, count;
};

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

gm_weights *gm_weights_new(void) {
    gm_weights *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->cap = 256;
    w->slots = calloc(w->cap, sizeof(slot));
    if (!w->slots) {
        free(w);
        return NULL;
    }
    return w;
}

void gm_weights_free(gm_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->cap; i++) {
        free(w->slots[i].name);
        mx_free(w->slots[i].a);
    }
    free(w->slots);
    free(w);
}

/* A take leaves the name in its slot with a NULL array, so probing chains
 * stay intact without tombstones; grow() drops such slots. */
static slot *find(const gm_weights *w, const char *name) {
    size_t i = hash_str(name) & (w->cap - 1);
    while (w->slots[i].name) {
        if (!strcmp(w->slots[i].name, name)) return &w->slots[i];
        i = (i + 1) & (w->cap - 1);
    }
    return &w->slots[i];
}

static int grow(gm_weights *w) {
    gm_weights bigger = {calloc(w->cap * 2, sizeof(slot)), w->cap * 2, 0};
    if (!bigger.slots) return -1;
    for (size_t i = 0; i < w->cap; i++) {
        if (!w->slots[i].name) continue;
        if (!w->slots[i].a) {
            free(w->slots[i].name);
            continue;
        }
        *find(&bigger, w->slots[i].name) = w->slots[i];
        bigger.count++;
    }
    free(w->slots);
    *w = bigger;
    return 0;
}

int gm_weights_put(gm_weights *w, const char *name, mx_array a) {
    if (!a) return gm_fail(GOMLX_ERR_INTERNAL, "null tensor for %s", name);
    if ((w->count + 1) * 2 > w->cap && grow(w)) {
        mx_free(a);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    slot *s = find(w, name);
    if (s->name) {
        if (!s->a) w->count++;
        mx_free(s->a);
        s->a = a;
        return 0;
    }
    s->name = strdup(name);
    if (!s->name) {
        mx_free(a);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    s->a = a;
    w->count++;
    return 0;
}

mx_array gm_weights_get(const gm_weights *w, const char *name) { return find(w, name)->a; }

mx_array gm_weights_take(gm_weights *w, const char *name) {
    slot *s = find(w, name);
    mx_array a = s->a;
    if (a) {
        s->a = NULL;
        w->count--;
    }
    return a;
}

size_t gm_weights_count(const gm_weights *w) { return w->count; }

int gm_weights_each(const gm_weights *w, int (*fn)(const char *, mx_array, void *), void *u) {
    for (size_t i = 0; i < w->cap; i++)
        if (w->slots[i].name && w->slots[i].a) {
            int rc = fn(w->slots[i].name, w->slots[i].a, u);
            if (rc) return rc;
        }
    return 0;
}

uint64_t gm_weights_bytes(const gm_weights *w) {
    uint64_t total = 0;
    for (size_t i = 0; i < w->cap; i++)
        if (w->slots[i].a) total += mx_nbytes(w->slots[i].a);
    return total;
}

static int put_tensor(const char *name, mx_array a, void *user) {
    return gm_weights_put(user, name, a) ? 1 : 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The shard file names: from the index if present, else every *.safetensors. */
static int list_shards(const char *dir, char ***out, int *n_out) {
    char *index_path = gm_path_join(dir, "model.safetensors.index.json");
    char **names = NULL;
    int n = 0, rc = 0;
    if (gm_file_exists(index_path)) {
        char *text;
        if ((rc = gm_read_file(index_path, &text, NULL))) goto done;
        cJSON *root = cJSON_Parse(text);
        free(text);
        const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
        if (!cJSON_IsObject(map)) {
            cJSON_Delete(root);
            rc = gm_fail(GOMLX_ERR_FORMAT, "%s: missing weight_map", index_path);
            goto done;
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, map) {
            if (!cJSON_IsString(e)) continue;
            int seen = 0;
            for (int i = 0; i < n; i++) seen |= !strcmp(names[i], e->valuestring);
            if (seen) continue;
            char **grown = realloc(names, sizeof(char *) * (size_t)(n + 1));
            if (!grown) break;
            names = grown;
            names[n++] = strdup(e->valuestring);
        }
        cJSON_Delete(root);
    } else {
        DIR *d = opendir(dir);
        if (!d) {
            rc = gm_fail(GOMLX_ERR_NOT_FOUND, "cannot open folder %s", dir);
            goto done;
        }
        struct dirent *ent;
        while ((ent = readdir(d))) {
            size_t len = strlen(ent->d_name);
            if (len < 12 || strcmp(ent->d_name + len - 12, ".safetensors")) continue;
            char **grown = realloc(names, sizeof(char *) * (size_t)(n + 1));
            if (!grown) break;
            names = grown;
            names[n++] = strdup(ent->d_name);
        }
        closedir(d);
    }
    if (!n) rc = gm_fail(GOMLX_ERR_NOT_FOUND, "%s: no *.safetensors weight files", dir);
    else qsort(names, (size_t)n, sizeof *names, cmp_str);
done:
    free(index_path);
    if (rc) {
        for (int i = 0; i < n; i++) free(names[i]);
        free(names);
        return rc;
    }
    *out = names;
    *n_out = n;
    return 0;
}

int gm_weights_load_folder(const char *dir, gm_weights *w, gm_load_progress progress, void *user) {
    char **shards;
    int n, rc = list_shards(dir, &shards, &n);
    if (rc) return rc;
    for (int i = 0; i < n && !rc; i++) {
        char *path = gm_path_join(dir, shards[i]);
        if (progress) {
            char msg[256];
            snprintf(msg, sizeof msg, "loading %s (%d/%d)", shards[i], i + 1, n);
            progress(0.1f + 0.7f * (float)i / (float)n, msg, user);
        }
        if (!gm_file_exists(path))
            rc = gm_fail(GOMLX_ERR_NOT_FOUND, "weight file %s is missing", path);
        else if (mx_load_safetensors(path, put_tensor, NULL, w))
            rc = gm_fail(GOMLX_ERR_FORMAT, "cannot read %s: %s", path, *mx_error() ? mx_error() : gm_error_message());
        free(path);
    }
    for (int i = 0; i < n; i++) free(shards[i]);
    free(shards);
    return rc;
}
