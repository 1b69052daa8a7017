/* `moecl footprint` behind the public API (moecl.h): a model description from a checkpoint's
 * headers or a writer preset, the memory plan for a placement and context, and its report.
 * Every number comes from scheduler/memplan.c; this file only gathers inputs and prints. */
#include "checkpoint.h"
#include "loader_internal.h"
#include "memplan.h"
#include "moecl.h"
#include "moecl_error.h"
#include "placement.h"
#include "recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct moecl_footprint_model {
    char name[256];
    struct moecl_memplan_model m;
    struct moecl_device_info *devs;
    int n_devs;
};

enum moecl_status moecl_footprint_model_open(const char *dir, const char *like,
                                             struct moecl_footprint_model **model_out) {
    enum moecl_status st = MOECL_OK;
    *model_out = NULL;
    if (!dir && !like)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "footprint: a checkpoint folder or a "
                                                      "preset (--like) is needed");
    struct moecl_footprint_model *fm = calloc(1, sizeof *fm);
    if (!fm)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "footprint: out of host memory");
    if (dir) {
        struct moecl_ckpt *ck = NULL;
        /* headers only: Hugging Face bf16 experts are not transposed (the plan counts the
         * buffers loading would make) */
        st = moecl_ckpt_open_ex(dir, MOECL_CKPT_LAZY_HF_BF16, &ck);
        if (st == MOECL_OK)
            st = moecl_memplan_model_from_ckpt(ck, &fm->m);
        moecl_ckpt_close(ck);
        snprintf(fm->name, sizeof fm->name, "%s", dir);
    } else {
        struct moecl_recipe r;
        memset(&r, 0, sizeof r);
        moecl_recipe_shape_full(&r);
        st = moecl_recipe_set(&r, like, 0, MOECL_QMODE_AFFINE, 0, 0, 0, MOECL_DTYPE_BF16);
        if (st == MOECL_OK)
            st = moecl_memplan_model_from_recipe(&r, &fm->m);
        snprintf(fm->name, sizeof fm->name, "like:%s", like);
    }
    if (st == MOECL_OK)
        st = moecl_devices_list(&fm->devs, &fm->n_devs);
    if (st != MOECL_OK) {
        moecl_footprint_model_release(fm);
        return st;
    }
    *model_out = fm;
    return MOECL_OK;
}

enum moecl_status moecl_footprint_model_add_gpu(struct moecl_footprint_model *fm,
                                                uint64_t global_mem_bytes,
                                                uint64_t max_alloc_bytes) {
    if (!fm || !global_mem_bytes)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "footprint: a virtual GPU needs memory");
    if (fm->n_devs >= 1000)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "footprint: too many devices");
    struct moecl_device_info *d = realloc(fm->devs, (size_t)(fm->n_devs + 1) * sizeof *d);
    if (!d)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "footprint: out of host memory");
    fm->devs = d;
    int n_virtual = 0;
    for (int i = 0; i < fm->n_devs; i++)
        n_virtual += strncmp(d[i].name, "virtual:", 8) == 0;
    struct moecl_device_info *v = &d[fm->n_devs];
    memset(v, 0, sizeof *v);
    v->index = fm->n_devs;
    v->platform_index = -1;
    v->index_in_platform = n_virtual;
    v->type = MOECL_DEVICE_GPU;
    snprintf(v->name, sizeof v->name, "virtual:%d", n_virtual);
    snprintf(v->device_name, sizeof v->device_name, "virtual GPU of %.2f GB",
             (double)global_mem_bytes / 1e9);
    v->global_mem_bytes = global_mem_bytes;
    v->max_alloc_bytes = max_alloc_bytes ? max_alloc_bytes : global_mem_bytes / 4;
    fm->n_devs++;
    return MOECL_OK;
}

void moecl_footprint_model_release(struct moecl_footprint_model *fm) {
    if (!fm)
        return;
    moecl_memplan_model_free(&fm->m);
    moecl_devices_free(fm->devs);
    free(fm);
}

void moecl_footprint_options_init(struct moecl_footprint_options *o) {
    memset(o, 0, sizeof *o);
    o->n_cpu_moe = -1;
    o->n_ctx = 4096;
    o->kv_type = MOECL_KV_F32;
}

static uint64_t host_physical_bytes(void) {
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

enum moecl_status moecl_footprint_plan(const struct moecl_footprint_model *fm,
                                       const struct moecl_footprint_options *o,
                                       struct moecl_footprint *out) {
    enum moecl_status st = MOECL_OK;
    memset(out, 0, sizeof *out);
    if (!fm || !o)
        return moecl_error_set(MOECL_ERR_INVALID_ARG, "footprint: NULL model or options");
    if (o->n_ctx <= 0 || o->max_kv_size < 0 || o->prefill_chunk < 0 || o->micro_batch < 0)
        return moecl_error_set(MOECL_ERR_INVALID_ARG,
                               "footprint: --ctx %d, --max-kv-size %d, --batch %d, --ubatch %d "
                               "(context must be positive, the others >= 0)",
                               o->n_ctx, o->max_kv_size, o->prefill_chunk, o->micro_batch);
    const struct moecl_config *cfg = &fm->m.cfg;
    struct moecl_placement p;
    int def = moecl_placement_default_device(fm->devs, fm->n_devs);
    if ((st = moecl_placement_init(&p, cfg->n_layers, def)) != MOECL_OK)
        return st;
    if (o->place && *o->place)
        st = moecl_placement_apply(&p, o->place, fm->devs, fm->n_devs);
    if (st == MOECL_OK && o->n_cpu_moe != -1)
        st = moecl_placement_cpu_moe(&p, o->n_cpu_moe == -2 ? -1 : o->n_cpu_moe, fm->devs,
                                     fm->n_devs);
    struct moecl_memplan_ctx c;
    moecl_memplan_ctx_init(&c, o->n_ctx);
    c.prefill_chunk = o->prefill_chunk;
    c.micro_batch = o->micro_batch;
    c.max_kv_size = o->max_kv_size;
    c.all_logits = o->all_logits;
    c.kv_type = o->kv_type;
    struct moecl_memplan *plan = malloc(sizeof *plan);
    if (st == MOECL_OK && !plan)
        st = moecl_error_set(MOECL_ERR_NO_MEMORY, "footprint: out of host memory");
    uint64_t host_cap = o->host_memory_bytes ? o->host_memory_bytes : host_physical_bytes();
    if (st == MOECL_OK)
        st = moecl_memplan_build(&fm->m, &p, fm->devs, fm->n_devs, &c, host_cap, plan);
    if (st == MOECL_OK) {
        snprintf(out->model, sizeof out->model, "%s", fm->name);
        moecl_placement_describe(&p, fm->devs, out->placement, sizeof out->placement);
        out->n_ctx = o->n_ctx;
        out->chunk = moecl_memplan_chunk(&c);
        out->max_kv_size = o->max_kv_size;
        out->kv_type = o->kv_type;
        out->stored_bytes = fm->m.stored_bytes;
        for (int i = 0; i < plan->n_devices && i < MOECL_FOOTPRINT_MAX_ROWS - 1; i++) {
            const struct moecl_memplan_device *d = &plan->dev[i];
            struct moecl_footprint_row *r = &out->rows[out->n_rows++];
            snprintf(r->name, sizeof r->name, "%s", fm->devs[d->device].name);
            snprintf(r->device_name, sizeof r->device_name, "%s", fm->devs[d->device].device_name);
            r->host_unified = d->host_unified;
            memcpy(r->bytes, d->bytes, sizeof r->bytes);
            r->total = d->total;
            r->owned = d->owned;
            r->capacity = d->capacity;
            r->max_alloc = d->max_alloc;
            r->left = d->left;
            r->largest = d->largest;
            snprintf(r->largest_what, sizeof r->largest_what, "%s", d->largest_what);
            r->fits = d->fits;
        }
        struct moecl_footprint_row *h = &out->rows[out->n_rows++];
        snprintf(h->name, sizeof h->name, "host");
        snprintf(h->device_name, sizeof h->device_name, "host memory");
        h->is_host = 1;
        memcpy(h->bytes, plan->host_bytes, sizeof h->bytes);
        h->total = h->owned = plan->host_total;
        h->capacity = plan->host_capacity;
        h->left = plan->host_left;
        h->fits = !plan->host_capacity || plan->host_total <= plan->host_capacity;
        out->fits = plan->fits;
        snprintf(out->reason, sizeof out->reason, "%s", plan->reason);
    }
    free(plan);
    moecl_placement_free(&p);
    return st;
}

/* ------------------------------------------------------------------ report */

static const char *mb(uint64_t n, char *buf, size_t size) {
    snprintf(buf, size, "%.1f", (double)n / 1e6);
    return buf;
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_json(const struct moecl_footprint *p, FILE *f) {
    fprintf(f, "{\n  \"model\": ");
    json_str(f, p->model);
    fprintf(f, ",\n  \"placement\": ");
    json_str(f, p->placement);
    fprintf(f,
            ",\n  \"n_ctx\": %d,\n  \"chunk\": %d,\n  \"max_kv_size\": %d,\n  \"kv_type\": "
            "\"%s\",\n  \"stored_bytes\": %llu,\n  \"fits\": %s,\n  \"reason\": ",
            p->n_ctx, p->chunk, p->max_kv_size, moecl_kv_type_name(p->kv_type),
            (unsigned long long)p->stored_bytes, p->fits ? "true" : "false");
    json_str(f, p->reason);
    fprintf(f, ",\n  \"devices\": [");
    for (int i = 0; i < p->n_rows; i++) {
        const struct moecl_footprint_row *r = &p->rows[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        json_str(f, r->name);
        fprintf(f, ", \"device_name\": ");
        json_str(f, r->device_name);
        fprintf(f, ", \"host\": %s, \"host_unified\": %s, \"bytes\": {",
                r->is_host ? "true" : "false", r->host_unified ? "true" : "false");
        for (int k = 0; k < MOECL_MEM_N_CLASSES; k++)
            fprintf(f, "%s\"%s\": %llu", k ? ", " : "", moecl_mem_class_id((enum moecl_mem_class)k),
                    (unsigned long long)r->bytes[k]);
        fprintf(f,
                "}, \"total\": %llu, \"owned\": %llu, \"capacity\": %llu, \"max_alloc\": %llu, "
                "\"left\": %lld, "
                "\"largest\": %llu, \"largest_what\": ",
                (unsigned long long)r->total, (unsigned long long)r->owned,
                (unsigned long long)r->capacity, (unsigned long long)r->max_alloc,
                (long long)r->left, (unsigned long long)r->largest);
        json_str(f, r->largest_what);
        fprintf(f, ", \"fits\": %s}", r->fits ? "true" : "false");
    }
    fprintf(f, "\n  ]\n}\n");
}

void moecl_footprint_write(const struct moecl_footprint *p, unsigned flags, FILE *f) {
    if (flags & MOECL_FOOTPRINT_JSON) {
        write_json(p, f);
        return;
    }
    char b[64];
    fprintf(f, "model      %s (%.2f GB of tensors)\n", p->model, (double)p->stored_bytes / 1e9);
    fprintf(f, "context    %d tokens, KV %s, prefill chunk %d", p->n_ctx,
            moecl_kv_type_name(p->kv_type), p->chunk);
    if (p->max_kv_size)
        fprintf(f, ", full layers' KV a ring of %d", p->max_kv_size);
    fprintf(f, "\nplacement  %s\n\n", p->placement);
    fprintf(f, "%-26s", "MB");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", p->rows[i].name);
    fputc('\n', f);
    for (int k = 0; k < MOECL_MEM_N_CLASSES; k++) {
        fprintf(f, "%-26s", moecl_mem_class_name((enum moecl_mem_class)k));
        for (int i = 0; i < p->n_rows; i++)
            fprintf(f, " %14s", mb(p->rows[i].bytes[k], b, sizeof b));
        fputc('\n', f);
    }
    fprintf(f, "%-26s", "total");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", mb(p->rows[i].total, b, sizeof b));
    fprintf(f, "\n%-26s", "device-allocated");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", mb(p->rows[i].owned, b, sizeof b));
    fprintf(f, "\n%-26s", "capacity");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", p->rows[i].capacity ? mb(p->rows[i].capacity, b, sizeof b) : "?");
    fprintf(f, "\n%-26s", "left");
    for (int i = 0; i < p->n_rows; i++) {
        if (p->rows[i].capacity)
            snprintf(b, sizeof b, "%.1f", (double)p->rows[i].left / 1e6);
        fprintf(f, " %14s", p->rows[i].capacity ? b : "?");
    }
    fprintf(f, "\n%-26s", "largest buffer");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", p->rows[i].is_host ? "" : mb(p->rows[i].largest, b, sizeof b));
    fprintf(f, "\n%-26s", "max allocation");
    for (int i = 0; i < p->n_rows; i++)
        fprintf(f, " %14s", p->rows[i].is_host ? "" : mb(p->rows[i].max_alloc, b, sizeof b));
    fputc('\n', f);
    for (int i = 0; i < p->n_rows; i++)
        if (p->rows[i].host_unified)
            fprintf(f,
                    "(%s shares host memory: its buffers are counted in the host column too; its "
                    "weights are views of the mapping, not device allocations)\n",
                    p->rows[i].name);
    if (p->fits)
        fprintf(f, "\nverdict    fits\n");
    else
        fprintf(f, "\nverdict    does not fit: %s\n", p->reason);
}
