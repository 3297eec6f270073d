/* check.h - the tiny test harness of the C tests: CHECK macros, a case
 * runner and the closing "N passed, N failed" line. */
#ifndef GM_CHECK_H
#define GM_CHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures_in_case;
static int check_cases_passed, check_cases_failed;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            check_failures_in_case++;                                                 \
        }                                                                             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            check_failures_in_case++;                                       \
        }                                                                   \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);                           \
        if (va_ != vb_) {                                                               \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                  \
            check_failures_in_case++;                                                   \
        }                                                                               \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                              \
    do {                                                                                   \
        double va_ = (double)(a), vb_ = (double)(b);                                       \
        if (!(fabs(va_ - vb_) <= (tol))) {                                                 \
            fprintf(stderr, "  %s:%d: |%s - %s| <= %g failed: %g vs %g\n", __FILE__, __LINE__, \
                    #a, #b, (double)(tol), va_, vb_);                                      \
            check_failures_in_case++;                                                      \
        }                                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                                    \
    do {                                                                                   \
        const char *va_ = (a), *vb_ = (b);                                                 \
        if (!va_ || !vb_ || strcmp(va_, vb_) != 0) {                                       \
            fprintf(stderr, "  %s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                    #a, #b, va_ ? va_ : "(null)", vb_ ? vb_ : "(null)");                   \
            check_failures_in_case++;                                                      \
        }                                                                                  \
    } while (0)

#define RUN(fn)                                                    \
    do {                                                           \
        check_failures_in_case = 0;                                \
        fn();                                                      \
        if (check_failures_in_case) {                              \
            check_cases_failed++;                                  \
            fprintf(stderr, "FAIL %s\n", #fn);                     \
        } else {                                                   \
            check_cases_passed++;                                  \
            fprintf(stderr, "ok   %s\n", #fn);                     \
        }                                                          \
    } while (0)

/* Prints the closing line and gives main's exit status; a CHECK that
 * failed after the last case (in main) fails the test too. */
static inline int check_summary(void) {
    int stray = check_cases_failed == 0 && check_failures_in_case > 0;
    printf("%d passed, %d failed%s\n", check_cases_passed, check_cases_failed,
           stray ? ", and a check outside the cases failed" : "");
    return check_cases_failed || stray ? 1 : 0;
}

/* The repo root (ctest runs from it; GOMLX_ROOT overrides). */
static inline const char *check_root(void) {
    const char *r = getenv("GOMLX_ROOT");
    return r && *r ? r : ".";
}

/* A whole file as a NUL-terminated string (free() it), or NULL. */
static inline char *check_read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)(n > 0 ? n : 0) + 1);
    if (n < 0 || fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = 0;
    fclose(f);
    return s;
}

static inline void check_write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A float32 2-D .npy file (numpy's format, version 1 or 2): malloc'd data. */
static inline float *check_read_npy(const char *path, int *rows, int *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char pre[12];
    float *data = NULL;
    if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) goto done;
    size_t hlen = pre[8] | (size_t)pre[9] << 8;
    if (pre[6] >= 2) {
        if (fread(pre + 10, 1, 2, f) != 2) goto done;
        hlen |= (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    }
    char *h = calloc(1, hlen + 1);
    if (fread(h, 1, hlen, f) == hlen && strstr(h, "'<f4'") && strstr(h, "'fortran_order': False")) {
        const char *s = strstr(h, "'shape': (");
        if (s && sscanf(s + 10, "%d, %d", rows, cols) == 2) {
            size_t n = (size_t)*rows * (size_t)*cols;
            data = malloc(n * sizeof(float));
            if (fread(data, sizeof(float), n, f) != n) {
                free(data);
                data = NULL;
            }
        }
    }
    free(h);
done:
    fclose(f);
    return data;
}

#endif
