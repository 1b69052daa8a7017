/* loader/st_write: the streaming safetensors writer, read back by the test-side reader. */
#include "test.h"

#include "mkmodel_read.h"
#include "st_write.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path_buf[4096];

static const char *tmp_path(const char *dir, const char *name) {
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

TEST(mkmodel_st_roundtrip) {
    char *dir = moecl_test_tmpdir("stw");
    REQUIRE(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s", tmp_path(dir, "a.safetensors"));
    struct moecl_st_writer *w = NULL;
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    int64_t s1[2] = {3, 5}, s2[1] = {7}, s3[3] = {2, 0, 4};
    CHECK(moecl_st_writer_metadata(w, "format", "mlx") == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "x.weight", MOECL_DTYPE_U32, 2, s1) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "q\"uote", MOECL_DTYPE_BF16, 1, s2) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "empty", MOECL_DTYPE_F32, 3, s3) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "x.weight", MOECL_DTYPE_U8, 1, s2) != MOECL_OK);
    CHECK_EQ(moecl_st_writer_data_bytes(w), 60 + 14);
    REQUIRE(moecl_st_writer_begin(w) == MOECL_OK);
    unsigned char data[74];
    for (int i = 0; i < 74; i++)
        data[i] = (unsigned char)(i * 7 + 1);
    CHECK(moecl_st_writer_tensor_begin(w, "x.weight") == MOECL_OK);
    /* in pieces of odd sizes */
    CHECK(moecl_st_writer_write(w, data, 13) == MOECL_OK);
    CHECK(moecl_st_writer_write(w, data + 13, 0) == MOECL_OK);
    CHECK(moecl_st_writer_write(w, data + 13, 47) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_begin(w, "q\"uote") == MOECL_OK);
    CHECK(moecl_st_writer_write(w, data + 60, 14) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_begin(w, "empty") == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_OK);
    CHECK(moecl_st_writer_finish(w) == MOECL_OK);
    moecl_st_writer_free(w);

    struct tst_file f;
    char err[512] = "";
    int rc = tst_st_read(path, &f, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    REQUIRE(rc == 0);
    CHECK_EQ(f.n, 3);
    CHECK(strcmp(f.format, "mlx") == 0);
    const struct tst_tensor *t = tst_st_find(&f, "x.weight");
    REQUIRE(t);
    CHECK(strcmp(t->dtype, "U32") == 0);
    CHECK_EQ(t->n_dims, 2);
    CHECK_EQ(t->shape[0], 3);
    CHECK_EQ(t->shape[1], 5);
    t = tst_st_find(&f, "q\"uote");
    REQUIRE(t);
    CHECK(strcmp(t->dtype, "BF16") == 0);
    unsigned char back[14];
    CHECK(tst_read_at(path, t->begin, back, 14) == 0);
    CHECK(memcmp(back, data + 60, 14) == 0);
    t = tst_st_find(&f, "empty");
    REQUIRE(t);
    CHECK_EQ(t->end - t->begin, 0);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

/* Large tensor written in pieces bigger and smaller than the internal buffer. */
TEST(mkmodel_st_large_pieces) {
    char *dir = moecl_test_tmpdir("stw");
    REQUIRE(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s", tmp_path(dir, "big.safetensors"));
    size_t n = (size_t)20 << 20;
    unsigned char *data = malloc(n);
    REQUIRE(data);
    uint64_t rs = 5;
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)moecl_test_rand(&rs);
    struct moecl_st_writer *w = NULL;
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    int64_t s[1] = {(int64_t)n};
    CHECK(moecl_st_writer_declare(w, "big", MOECL_DTYPE_U8, 1, s) == MOECL_OK);
    REQUIRE(moecl_st_writer_begin(w) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_begin(w, "big") == MOECL_OK);
    size_t pieces[] = {100, (size_t)9 << 20, 12345, (size_t)3 << 20};
    size_t pos = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(moecl_st_writer_write(w, data + pos, pieces[i]) == MOECL_OK);
        pos += pieces[i];
    }
    CHECK(moecl_st_writer_write(w, data + pos, n - pos) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_OK);
    CHECK(moecl_st_writer_finish(w) == MOECL_OK);
    moecl_st_writer_free(w);
    struct tst_file f;
    char err[512];
    REQUIRE(tst_st_read(path, &f, err, sizeof err) == 0);
    unsigned char *back = malloc(n);
    REQUIRE(back);
    CHECK(tst_read_at(path, f.t[0].begin, back, n) == 0);
    CHECK(memcmp(back, data, n) == 0);
    free(back);
    free(data);
    tst_st_free(&f);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_st_too_few_bytes) {
    char *dir = moecl_test_tmpdir("stw");
    REQUIRE(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s", tmp_path(dir, "few.safetensors"));
    struct moecl_st_writer *w = NULL;
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    int64_t s[1] = {8};
    CHECK(moecl_st_writer_declare(w, "layer.scales", MOECL_DTYPE_F16, 1, s) == MOECL_OK);
    REQUIRE(moecl_st_writer_begin(w) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_begin(w, "layer.scales") == MOECL_OK);
    unsigned char b[16] = {0};
    CHECK(moecl_st_writer_write(w, b, 15) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "layer.scales");
    CHECK_STR_CONTAINS(moecl_last_error(), "few.safetensors");
    CHECK(moecl_st_writer_finish(w) != MOECL_OK);
    moecl_st_writer_free(w);
    /* A failed write leaves no partial file behind. */
    CHECK(access(path, F_OK) != 0);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_st_too_many_bytes) {
    char *dir = moecl_test_tmpdir("stw");
    REQUIRE(dir);
    char path[4096];
    snprintf(path, sizeof path, "%s", tmp_path(dir, "many.safetensors"));
    struct moecl_st_writer *w = NULL;
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    int64_t s[1] = {4};
    CHECK(moecl_st_writer_declare(w, "a", MOECL_DTYPE_U32, 1, s) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "b", MOECL_DTYPE_U32, 1, s) == MOECL_OK);
    REQUIRE(moecl_st_writer_begin(w) == MOECL_OK);
    unsigned char b[32] = {0};
    CHECK(moecl_st_writer_tensor_begin(w, "b") == MOECL_ERR_INVALID_ARG); /* out of order */
    CHECK_STR_CONTAINS(moecl_last_error(), "expected a");
    CHECK(moecl_st_writer_tensor_begin(w, "a") == MOECL_OK);
    CHECK(moecl_st_writer_write(w, b, 10) == MOECL_OK);
    CHECK(moecl_st_writer_write(w, b, 10) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "tensor a: 20 bytes given, declared size is 16");
    moecl_st_writer_free(w);
    CHECK(access(path, F_OK) != 0);

    /* never writing a declared tensor is an error at finish */
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "a", MOECL_DTYPE_U32, 1, s) == MOECL_OK);
    CHECK(moecl_st_writer_declare(w, "b", MOECL_DTYPE_U32, 1, s) == MOECL_OK);
    REQUIRE(moecl_st_writer_begin(w) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_begin(w, "a") == MOECL_OK);
    CHECK(moecl_st_writer_write(w, b, 16) == MOECL_OK);
    CHECK(moecl_st_writer_tensor_end(w) == MOECL_OK);
    CHECK(moecl_st_writer_finish(w) == MOECL_ERR_INVALID_ARG);
    CHECK_STR_CONTAINS(moecl_last_error(), "tensor b");
    moecl_st_writer_free(w);
    moecl_test_rmtree(dir);
    free(dir);
}

TEST(mkmodel_st_unwritable_path) {
    struct moecl_st_writer *w = NULL;
    const char *path = "/nonexistent-moecl-dir/x.safetensors";
    REQUIRE(moecl_st_writer_create(path, &w) == MOECL_OK);
    int64_t s[1] = {4};
    CHECK(moecl_st_writer_declare(w, "a", MOECL_DTYPE_U8, 1, s) == MOECL_OK);
    CHECK(moecl_st_writer_begin(w) == MOECL_ERR_IO);
    CHECK_STR_CONTAINS(moecl_last_error(), "/nonexistent-moecl-dir/x.safetensors");
    moecl_st_writer_free(w);
}
