/* tokenizer_json.c - gm_tokenizer_load: tokenizer.json (model, added
 * tokens, normalizer, pre-tokenizer, post-processor, decoder) plus what
 * tokenizer_config.json says (bos/eos, add_bos/add_eos, chat template). */
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"
#include "util/error.h"
#include "util/file.h"
#include "util/whole.h"

static char *dupstr(const char *s) {
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int flag(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = get(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* v as a token id: a whole number in 0 .. GM_VOCAB_MAX_ID (a huge id
 * would size the tables). */
static int json_id(const cJSON *v, int32_t *out) {
    int id;
    if (!cJSON_IsNumber(v) || !gm_whole_in(v->valuedouble, 0, GM_VOCAB_MAX_ID, &id)) return 0;
    *out = id;
    return 1;
}

static int load_model(gm_tokenizer *t, const cJSON *model) {
    if (!cJSON_IsObject(model)) return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json has no model");
    const cJSON *type = get(model, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
        return gm_fail(GOMLX_ERR_UNSUPPORTED, "tokenizer model '%s' is not supported (only BPE)",
                       type->valuestring);
    const cJSON *vocab = get(model, "vocab"), *merges = get(model, "merges");
    if (!cJSON_IsObject(vocab)) return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: model has no vocab");
    gm_bpe *b = &t->bpe;
    b->byte_fallback = flag(model, "byte_fallback", 0);
    b->fuse_unk = flag(model, "fuse_unk", 0);
    b->ignore_merges = flag(model, "ignore_merges", 0);
    const cJSON *pre = get(model, "continuing_subword_prefix"), *suf = get(model, "end_of_word_suffix");
    if (cJSON_IsString(pre) && *pre->valuestring && !(b->prefix = dupstr(pre->valuestring)))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (cJSON_IsString(suf) && *suf->valuestring && !(b->suffix = dupstr(suf->valuestring)))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (gm_vocab_init(&b->vocab, (size_t)cJSON_GetArraySize(vocab)))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        int32_t id;
        if (!json_id(it, &id))
            return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: token '%s' has no id in 0 .. %d", it->string,
                           GM_VOCAB_MAX_ID);
        if (gm_vocab_put(&b->vocab, it->string, strlen(it->string), id))
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    const cJSON *unk = get(model, "unk_token");
    if (cJSON_IsString(unk)) b->unk_id = gm_vocab_get(&b->vocab, unk->valuestring, strlen(unk->valuestring));
    if (merges && !cJSON_IsArray(merges)) return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: merges is not a list");
    if (gm_pairmap_init(&b->merges, (size_t)cJSON_GetArraySize(merges)))
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    uint32_t rank = 0;
    cJSON_ArrayForEach(it, merges) {
        const char *a, *c;
        size_t na, nc;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (!sp) return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: merge '%s' is not a pair", it->valuestring);
            a = it->valuestring;
            na = (size_t)(sp - a);
            c = sp + 1;
            nc = strlen(c);
        } else if (cJSON_GetArraySize(it) == 2 && cJSON_IsString(it->child) && cJSON_IsString(it->child->next)) {
            a = it->child->valuestring;
            na = strlen(a);
            c = it->child->next->valuestring;
            nc = strlen(c);
        } else {
            return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: merge %u is not a pair", rank);
        }
        int rc = gm_bpe_add_merge(b, a, na, c, nc, rank++);
        if (rc) return rc;
    }
    return 0;
}

/* Added tokens take the ids HF gives them, which is not always the id the
 * file writes: a token already in the vocabulary keeps that id, a new one
 * goes after the largest added id (or at the end of the vocabulary). */
static int load_added(gm_tokenizer *t, const cJSON *list) {
    const cJSON *it;
    int32_t vocab_size = (int32_t)t->bpe.vocab.count, max_added = -1;
    cJSON_ArrayForEach(it, list) {
        const cJSON *content = get(it, "content");
        int32_t file_id; /* checked only: the id used is worked out below */
        if (!json_id(get(it, "id"), &file_id) || !cJSON_IsString(content))
            return gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json: bad added token");
        const char *c = content->valuestring;
        if (!*c) continue;
        const gm_added_token *known = gm_added_find(&t->added, c, strlen(c));
        int32_t tid = known ? known->id : gm_vocab_get(&t->bpe.vocab, c, strlen(c));
        if (tid < 0)
            tid = max_added < 0 ? vocab_size : max_added >= vocab_size || vocab_size == 0 ? max_added + 1 : vocab_size;
        if (tid > max_added) max_added = tid;
        int special = flag(it, "special", 0);
        int rc = gm_added_add(&t->added, c, tid, special, flag(it, "lstrip", 0), flag(it, "rstrip", 0),
                              flag(it, "single_word", 0), flag(it, "normalized", !special));
        if (rc) return rc;
    }
    return 0;
}

static int push_token(gm_tokenizer *t, gm_ids *ids, const char *token) {
    int32_t id = gm_tokenizer_token_id(t, token);
    if (id < 0) return gm_fail(GOMLX_ERR_FORMAT, "post-processor token '%s' is not in the vocabulary", token);
    return gm_ids_push(ids, id) ? gm_fail(GOMLX_ERR_INTERNAL, "out of memory") : 0;
}

/* What the post-processor adds around a single sequence. *templated is set
 * when it adds special tokens at all (then tokenizer_config's add_bos_token
 * is not consulted). */
static int load_post(gm_tokenizer *t, const cJSON *p, int *templated) {
    if (!p || cJSON_IsNull(p)) return 0;
    const cJSON *type = get(p, "type");
    const char *ty = cJSON_IsString(type) ? type->valuestring : "";
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(p, "processors")) {
            int rc = load_post(t, it, templated);
            if (rc) return rc;
        }
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) return 0; /* only moves offsets */
    if (!strcmp(ty, "TemplateProcessing")) {
        *templated = 1;
        const cJSON *specials = get(p, "special_tokens"), *it;
        int seen_seq = 0;
        cJSON_ArrayForEach(it, get(p, "single")) {
            const cJSON *sp = get(it, "SpecialToken");
            if (get(it, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const cJSON *name = get(sp, "id");
            if (!cJSON_IsString(name)) return gm_fail(GOMLX_ERR_FORMAT, "TemplateProcessing: bad piece");
            const cJSON *ids = get(get(specials, name->valuestring), "ids"), *id;
            gm_ids *dst = seen_seq ? &t->suffix : &t->prefix;
            if (!cJSON_IsArray(ids)) {
                int rc = push_token(t, dst, name->valuestring);
                if (rc) return rc;
                continue;
            }
            cJSON_ArrayForEach(id, ids) {
                int32_t v;
                if (!json_id(id, &v) || gm_ids_push(dst, v))
                    return gm_fail(GOMLX_ERR_FORMAT, "TemplateProcessing: bad ids for %s", name->valuestring);
            }
        }
        return 0;
    }
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        *templated = 1;
        const cJSON *cls = get(p, "cls"), *sep = get(p, "sep");
        int32_t cls_id, sep_id;
        if (cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2 ||
            !json_id(cJSON_GetArrayItem(cls, 1), &cls_id) || !json_id(cJSON_GetArrayItem(sep, 1), &sep_id))
            return gm_fail(GOMLX_ERR_FORMAT, "%s: bad cls/sep", ty);
        if (gm_ids_push(&t->prefix, cls_id) || gm_ids_push(&t->suffix, sep_id))
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        return 0;
    }
    return gm_fail(GOMLX_ERR_UNSUPPORTED, "post_processor type '%s' is not supported", ty);
}

/* A token in tokenizer_config.json is a string or {"content": ...}. */
static const char *token_text(const cJSON *v) {
    if (cJSON_IsString(v)) return v->valuestring;
    const cJSON *c = get(v, "content");
    return cJSON_IsString(c) ? c->valuestring : NULL;
}

static int load_config(gm_tokenizer *t, const char *dir, const cJSON **cfg_out, cJSON **cfg_owned) {
    *cfg_out = NULL;
    *cfg_owned = NULL;
    char *path = gm_path_join(dir, "tokenizer_config.json");
    if (!path) return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (gm_file_exists(path)) {
        char *text;
        size_t len;
        int rc = gm_read_file(path, &text, &len);
        if (rc) {
            free(path);
            return rc;
        }
        cJSON *cfg = cJSON_ParseWithLength(text, len);
        free(text);
        if (!cfg) {
            rc = gm_fail(GOMLX_ERR_FORMAT, "%s is not valid JSON", path);
            free(path);
            return rc;
        }
        *cfg_owned = cfg;
        *cfg_out = cfg;
        const cJSON *tpl = get(cfg, "chat_template");
        const char *s = NULL;
        if (cJSON_IsString(tpl)) {
            s = tpl->valuestring;
        } else if (cJSON_IsArray(tpl)) { /* [{name, template}]: the default one */
            const cJSON *it;
            cJSON_ArrayForEach(it, tpl) {
                const cJSON *name = get(it, "name"), *body = get(it, "template");
                if (!cJSON_IsString(body)) continue;
                if (!s || (cJSON_IsString(name) && !strcmp(name->valuestring, "default"))) s = body->valuestring;
            }
        }
        if (s && !(t->chat_template = dupstr(s))) {
            free(path);
            return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        }
    }
    free(path);
    if (!t->chat_template) { /* newer repos keep it in its own file */
        path = gm_path_join(dir, "chat_template.jinja");
        if (path && gm_file_exists(path)) {
            size_t len;
            int rc = gm_read_file(path, &t->chat_template, &len);
            if (rc) {
                free(path);
                return rc;
            }
        }
        free(path);
    }
    return 0;
}

static int load_json(gm_tokenizer *t, const char *file, const char *dir) {
    char *text;
    size_t len;
    int rc = gm_read_file(file, &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return gm_fail(GOMLX_ERR_FORMAT, "%s is not valid JSON", file);
    const cJSON *cfg;
    cJSON *cfg_owned;
    rc = load_config(t, dir, &cfg, &cfg_owned);
    if (!rc && !cJSON_IsObject(root)) rc = gm_fail(GOMLX_ERR_FORMAT, "tokenizer.json is not an object");
    if (!rc) rc = load_model(t, get(root, "model"));
    if (!rc) rc = load_added(t, get(root, "added_tokens"));
    if (!rc) rc = gm_normalizer_from_json(get(root, "normalizer"), &t->norm);
    if (!rc) rc = gm_pretok_from_json(get(root, "pre_tokenizer"), &t->pre);
    if (!rc) rc = gm_decoder_from_json(get(root, "decoder"), &t->dec);
    int templated = 0;
    if (!rc) rc = load_post(t, get(root, "post_processor"), &templated);
    const char *bos = cfg ? token_text(get(cfg, "bos_token")) : NULL;
    const char *eos = cfg ? token_text(get(cfg, "eos_token")) : NULL;
    if (!rc) rc = gm_tokenizer_finish(t, bos, eos);
    /* Without a template, tokenizer_config's own flags decide (as
     * transformers does for the Llama/Gemma classes). */
    if (!rc && !templated && cfg) {
        if (flag(cfg, "add_bos_token", 0) && t->bos_id >= 0 && gm_ids_push(&t->prefix, t->bos_id))
            rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
        if (!rc && flag(cfg, "add_eos_token", 0) && t->eos_id >= 0 && gm_ids_push(&t->suffix, t->eos_id))
            rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    cJSON_Delete(cfg_owned);
    cJSON_Delete(root);
    return rc;
}

int gm_tokenizer_load(const char *path, gm_tokenizer **out) {
    if (!path || !out) return gm_fail(GOMLX_ERR_INVALID_INPUT, "gm_tokenizer_load: NULL argument");
    char *file, *dir;
    if (gm_is_dir(path)) {
        file = gm_path_join(path, "tokenizer.json");
        dir = dupstr(path);
    } else {
        file = dupstr(path);
        dir = dupstr(path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            if (slash) *slash = 0;
            else strcpy(dir, ".");
        }
    }
    if (!file || !dir) {
        free(file);
        free(dir);
        return gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    }
    int rc = 0;
    if (!gm_file_exists(file)) rc = gm_fail(GOMLX_ERR_NOT_FOUND, "no tokenizer.json at %s", path);
    gm_tokenizer *t = rc ? NULL : gm_tokenizer_alloc();
    if (!rc && !t) rc = gm_fail(GOMLX_ERR_INTERNAL, "out of memory");
    if (!rc) rc = load_json(t, file, dir);
    if (rc && t) gm_fail_context(rc, "loading %s", file);
    free(file);
    free(dir);
    if (rc) {
        gm_tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}
