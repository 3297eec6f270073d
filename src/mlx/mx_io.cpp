// mx_io.cpp - tensor files through MLX's readers and writers: safetensors
// and GGUF loading by callback (in sorted-name order, so loading is
// deterministic), safetensors and .npy saving.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include <mlx/io.h>
#include <mlx/ops.h>

#include "mlx/mx_internal.h"

namespace mc = mlx::core;
using mc::array;
using namespace gomlx::mx;

namespace {

template <class Map>
std::vector<std::string> sorted_keys(const Map &m) {
    std::vector<std::string> keys;
    keys.reserve(m.size());
    for (const auto &kv : m) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    return keys;
}

// A callback that stops the load has its own reason (the engine records it
// in its own error buffer), so the shim's message is left empty then.

// Hands each tensor to fn (which owns it); returns fn's first non-zero.
template <class Map>
int feed_tensors(Map &tensors, mx_tensor_fn fn, void *user) {
    for (const std::string &name : sorted_keys(tensors)) {
        auto it = tensors.find(name);
        mx_array h = wrap_unscoped(std::move(it->second));
        tensors.erase(it);  // what is not handed over is freed with the map
        int rc = fn(name.c_str(), h, user);
        if (rc) {
            mx_clear_error();
            return rc;
        }
    }
    return 0;
}

}  // namespace

extern "C" {

int mx_load_safetensors(const char *path, mx_tensor_fn fn, mx_meta_str_fn meta_fn, void *user) {
    if (!path || !fn) {
        record("mx_load_safetensors: NULL path or callback");
        return -1;
    }
    return guard_ret(-1, [&] {
        mc::SafetensorsLoad l = mc::load_safetensors(std::string(path));
        if (meta_fn)
            for (const std::string &k : sorted_keys(l.second)) {
                int rc = meta_fn(k.c_str(), l.second[k].c_str(), user);
                if (rc) {
                    mx_clear_error();
                    return rc;
                }
            }
        return feed_tensors(l.first, fn, user);
    });
}

int mx_load_gguf(const char *path, mx_tensor_fn fn, mx_meta_fn meta_fn, void *user) {
    if (!path || !fn) {
        record("mx_load_gguf: NULL path or callback");
        return -1;
    }
    return guard_ret(-1, [&] {
        check_gguf_file(path);
        mc::GGUFLoad l = mc::load_gguf(std::string(path));
        if (meta_fn)
            for (const std::string &k : sorted_keys(l.second)) {
                const mc::GGUFMetaData &m = l.second[k];
                mx_meta_value v{};
                std::vector<const char *> strs;
                mx_array borrowed = nullptr;
                if (const auto *a = std::get_if<array>(&m)) {
                    borrowed = wrap_unscoped(*a);
                    v.kind = MX_META_ARRAY;
                    v.array = borrowed;
                } else if (const auto *s = std::get_if<std::string>(&m)) {
                    v.kind = MX_META_STRING;
                    v.string = s->c_str();
                } else if (const auto *sv = std::get_if<std::vector<std::string>>(&m)) {
                    for (const auto &s2 : *sv) strs.push_back(s2.c_str());
                    v.kind = MX_META_STRINGS;
                    v.strings = strs.data();
                    v.n_strings = strs.size();
                } else {
                    v.kind = MX_META_NONE;
                }
                int rc = meta_fn(k.c_str(), &v, user);
                delete borrowed;
                if (rc) {
                    mx_clear_error();
                    return rc;
                }
            }
        return feed_tensors(l.first, fn, user);
    });
}

int mx_save_npy(const char *path, mx_array a) {
    if (!a) return -1;
    if (!path) {
        record("mx_save_npy: NULL path");
        return -1;
    }
    return guard_ret(-1, [&] {
        mc::save(std::string(path), a->a);
        return 0;
    });
}

int mx_save_safetensors(const char *path, const char *const *names, const mx_array *arrays, int n) {
    if (!path || n < 0 || (n > 0 && (!names || !arrays))) {
        record("mx_save_safetensors: bad arguments");
        return -1;
    }
    for (int i = 0; i < n; i++)
        if (!arrays[i]) return -1;
    return guard_ret(-1, [&] {
        std::unordered_map<std::string, array> m;
        for (int i = 0; i < n; i++) {
            if (!names[i]) throw std::invalid_argument("mx_save_safetensors: NULL name");
            if (!m.emplace(names[i], arrays[i]->a).second)
                throw std::invalid_argument(std::string("mx_save_safetensors: duplicate name ") +
                                            names[i]);
        }
        mc::save_safetensors(std::string(path), std::move(m));
        return 0;
    });
}

}  // extern "C"
