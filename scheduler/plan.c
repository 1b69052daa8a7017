/* The per-step plan (plan.h). */
#include "plan.h"

#include "moecl_error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static enum moecl_handoff_kind kind_of(const struct moecl_plan_device *devs, int from, int to) {
    if (from == to)
        return MOECL_HANDOFF_NONE;
    return devs[from].space == devs[to].space ? MOECL_HANDOFF_EVENT : MOECL_HANDOFF_HOST;
}

enum moecl_status moecl_plan_build(const struct moecl_placement *p,
                                   const struct moecl_plan_device *devs, int n_devs,
                                   struct moecl_plan *plan) {
    memset(plan, 0, sizeof *plan);
    int L = p->n_layers;
    int check[3] = {p->embed, p->lm_head, 0};
    for (int i = 0; i < 2; i++)
        if (check[i] < 0 || check[i] >= n_devs)
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "plan: device %d of %d", check[i],
                                   n_devs);
    for (int l = 0; l < L; l++)
        if (p->attn[l] < 0 || p->attn[l] >= n_devs || p->experts[l] < 0 || p->experts[l] >= n_devs)
            return moecl_error_set(MOECL_ERR_INVALID_ARG, "plan: layer %d device out of range", l);
    plan->ops = calloc((size_t)(2 + 2 * L), sizeof *plan->ops);
    if (!plan->ops)
        return moecl_error_set(MOECL_ERR_NO_MEMORY, "plan: out of host memory");
    struct moecl_plan_op *o = plan->ops;
    int at = p->embed; /* where the residual stream is */
    *o++ = (struct moecl_plan_op){MOECL_OP_EMBED,    -1, p->embed, p->embed, MOECL_HANDOFF_NONE,
                                  MOECL_HANDOFF_NONE};
    for (int l = 0; l < L; l++) {
        int a = p->attn[l], e = p->experts[l];
        *o++ = (struct moecl_plan_op){MOECL_OP_ATTN,     l, a, at, kind_of(devs, at, a),
                                      MOECL_HANDOFF_NONE};
        *o++ = (struct moecl_plan_op){MOECL_OP_EXPERTS,   l, e, a, kind_of(devs, a, e),
                                      kind_of(devs, e, a)};
        at = a;
    }
    *o++ = (struct moecl_plan_op){
        MOECL_OP_HEAD, -1, p->lm_head, at, kind_of(devs, at, p->lm_head), MOECL_HANDOFF_NONE};
    plan->n_ops = (int)(o - plan->ops);
    for (int i = 0; i < plan->n_ops; i++) {
        plan->n_handoffs[plan->ops[i].in]++;
        if (plan->ops[i].kind == MOECL_OP_EXPERTS)
            plan->n_handoffs[plan->ops[i].back]++;
    }
    return MOECL_OK;
}

void moecl_plan_free(struct moecl_plan *plan) {
    if (!plan)
        return;
    free(plan->ops);
    memset(plan, 0, sizeof *plan);
}

const char *moecl_handoff_name(enum moecl_handoff_kind k) {
    static const char *const names[] = {"none", "event", "host"};
    return (unsigned)k < 3 ? names[k] : "?";
}

void moecl_plan_describe(const struct moecl_plan *plan, char *buf, size_t n) {
    static const char *const kinds[] = {"EMBED", "ATTN", "EXPERTS", "HEAD"};
    size_t len = 0;
    if (!n)
        return;
    buf[0] = 0;
    for (int i = 0; i < plan->n_ops && len < n; i++) {
        const struct moecl_plan_op *o = &plan->ops[i];
        char layer[16] = "";
        if (o->layer >= 0)
            snprintf(layer, sizeof layer, " %d", o->layer);
        len += (size_t)snprintf(buf + len, n - len, "%s%s @%d <- @%d (%s)", kinds[o->kind], layer,
                                o->device, o->from, moecl_handoff_name(o->in));
        if (len < n && o->kind == MOECL_OP_EXPERTS)
            len += (size_t)snprintf(buf + len, n - len, " back (%s)", moecl_handoff_name(o->back));
        if (len < n)
            len += (size_t)snprintf(buf + len, n - len, "\n");
    }
}
