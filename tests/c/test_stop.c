/* test_stop.c - stop strings matched across token boundaries, and only
 * undecided text held back. */
#include "check.h"
#include "generate/stop.h"

static void push_all(gm_stop *s, const char *const *pieces, int n, char *out, int *hit_at) {
    out[0] = 0;
    *hit_at = -1;
    for (int i = 0; i < n; i++) {
        char *r;
        size_t len;
        int hit = gm_stop_push(s, pieces[i], strlen(pieces[i]), &r, &len);
        strncat(out, r, len);
        if (hit) {
            *hit_at = i;
            return;
        }
    }
    char *r;
    size_t len;
    gm_stop_flush(s, &r, &len);
    strncat(out, r, len);
}

static void test_match_across_pieces(void) {
    const char *stops[] = {"STOP"};
    gm_stop s;
    gm_stop_init(&s, stops, 1);
    const char *pieces[] = {"Hel", "lo S", "T", "OP and more"};
    char out[128];
    int hit;
    push_all(&s, pieces, 4, out, &hit);
    CHECK_STR(out, "Hello ");
    CHECK_EQ_INT(hit, 3);
    gm_stop_free(&s);
}

static void test_false_prefix_is_released(void) {
    const char *stops[] = {"\n\nUser:", "###"};
    gm_stop s;
    gm_stop_init(&s, stops, 2);
    char *r;
    size_t len;
    /* "\n\nUs" could still become a stop string: held back. */
    CHECK_EQ_INT(gm_stop_push(&s, "a\n\nUs", 5, &r, &len), 0);
    CHECK_EQ_INT((int)len, 1);
    /* "\n\nUsb" cannot: released in full. */
    CHECK_EQ_INT(gm_stop_push(&s, "b", 1, &r, &len), 0);
    CHECK_EQ_INT((int)len, 5);
    CHECK(!memcmp(r, "\n\nUsb", 5));
    CHECK_EQ_INT(gm_stop_push(&s, "##", 2, &r, &len), 0);
    CHECK_EQ_INT((int)len, 0);
    CHECK_EQ_INT(gm_stop_push(&s, "#x", 2, &r, &len), 1);
    CHECK_EQ_INT((int)len, 0);
    gm_stop_free(&s);
}

static void test_no_stops_releases_everything(void) {
    gm_stop s;
    gm_stop_init(&s, NULL, 0);
    const char *pieces[] = {"a", "bc", "def"};
    char out[64];
    int hit;
    push_all(&s, pieces, 3, out, &hit);
    CHECK_STR(out, "abcdef");
    CHECK_EQ_INT(hit, -1);
    gm_stop_free(&s);
}

int main(void) {
    RUN(test_match_across_pieces);
    RUN(test_false_prefix_is_released);
    RUN(test_no_stops_releases_everything);
    return check_summary();
}
