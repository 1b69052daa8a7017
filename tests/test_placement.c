/* Placement spec parsing: every key, ranges, shorthands and the refusals. */
#include "test.h"

#include "placement.h"
#include "plan.h"

#include <string.h>

static void fake_devices(struct moecl_device_info d[3]) {
    memset(d, 0, 3 * sizeof d[0]);
    const char *names[3] = {"pocl:0", "pocl:1", "nvidia:0"};
    for (int i = 0; i < 3; i++) {
        d[i].index = i;
        snprintf(d[i].name, sizeof d[i].name, "%s", names[i]);
        d[i].type = i == 2 ? MOECL_DEVICE_GPU : MOECL_DEVICE_CPU;
    }
}

TEST(placement_default_prefers_gpu) {
    struct moecl_device_info d[3];
    fake_devices(d);
    CHECK_EQ(moecl_placement_default_device(d, 3), 2);
    CHECK_EQ(moecl_placement_default_device(d, 2), 0);
}

TEST(placement_spec_keys_and_ranges) {
    struct moecl_device_info d[3];
    fake_devices(d);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, 24, 2) == MOECL_OK);
    REQUIRE(moecl_placement_apply(&p, "attn=gpu,experts=cpu,experts[20-23]=pocl:1,embed=1", d, 3) ==
            MOECL_OK);
    CHECK_EQ(p.attn[0], 2);
    CHECK_EQ(p.attn[23], 2);
    CHECK_EQ(p.experts[0], 0);
    CHECK_EQ(p.experts[19], 0);
    CHECK_EQ(p.experts[20], 1);
    CHECK_EQ(p.experts[23], 1);
    CHECK_EQ(p.embed, 1);
    CHECK_EQ(p.lm_head, 2);
    char buf[256];
    moecl_placement_describe(&p, d, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "embed=pocl:1 attn=nvidia:0 experts[0-19]=pocl:0 "
                            "experts[20-23]=pocl:1 lm_head=nvidia:0");
    int used[4];
    CHECK_EQ(moecl_placement_devices(&p, used, 4), 3);
    REQUIRE(moecl_placement_apply(&p, "all=pocl:0, attn[3]=gpu", d, 3) == MOECL_OK);
    CHECK_EQ(p.attn[3], 2);
    CHECK_EQ(p.attn[4], 0);
    CHECK_EQ(p.experts[23], 0);
    CHECK_EQ(p.lm_head, 0);
    moecl_placement_free(&p);
}

TEST(placement_cpu_moe_shorthands) {
    struct moecl_device_info d[3];
    fake_devices(d);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, 24, 2) == MOECL_OK);
    REQUIRE(moecl_placement_cpu_moe(&p, 12, d, 3) == MOECL_OK);
    CHECK_EQ(p.experts[11], 0);
    CHECK_EQ(p.experts[12], 2);
    CHECK_EQ(p.attn[0], 2);
    REQUIRE(moecl_placement_cpu_moe(&p, -1, d, 3) == MOECL_OK);
    CHECK_EQ(p.experts[23], 0);
    CHECK(moecl_placement_cpu_moe(&p, 25, d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "only 24 layers");
    moecl_placement_free(&p);
}

TEST(placement_refusals_name_the_entry) {
    struct moecl_device_info d[3];
    fake_devices(d);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, 4, 0) == MOECL_OK);
    CHECK(moecl_placement_apply(&p, "attn=amd:0", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "'attn=amd:0'");
    CHECK_STR_CONTAINS(moecl_last_error(), "no device 'amd:0'");
    CHECK(moecl_placement_apply(&p, "experts[2-9]=cpu", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "layer 9 out of range");
    CHECK(moecl_placement_apply(&p, "experts[3-1]=cpu", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "bad layer range");
    CHECK(moecl_placement_apply(&p, "router=cpu", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "unknown key 'router'");
    CHECK(moecl_placement_apply(&p, "attn", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_STR_CONTAINS(moecl_last_error(), "expected KEY=DEVICE");
    CHECK(moecl_placement_apply(&p, "embed[1]=cpu", d, 3) == MOECL_ERR_PLACEMENT);
    /* A failed apply leaves the placement as it was. */
    CHECK_EQ(p.experts[2], 0);
    REQUIRE(moecl_placement_apply(&p, "experts=gpu,attn=amd:1", d, 3) == MOECL_ERR_PLACEMENT);
    CHECK_EQ(p.experts[0], 0);
    moecl_placement_free(&p);
}

/* The per-step plan: ops in order, where each input comes from, and the hand-off kinds (same
 * device / same context / across contexts), counted per step. */
TEST(placement_plan_handoffs) {
    struct moecl_device_info d[3];
    fake_devices(d);
    struct moecl_placement p;
    REQUIRE(moecl_placement_init(&p, 4, 2) == MOECL_OK);
    /* experts of layers 0-1 on pocl:0 (another context than nvidia:0), of layer 3 on pocl:1 */
    REQUIRE(moecl_placement_apply(&p, "experts[0-1]=pocl:0,experts[3]=pocl:1,attn[2]=pocl:0", d,
                                  3) == MOECL_OK);
    /* spaces: pocl:0 and pocl:1 share one, nvidia:0 has its own */
    struct moecl_plan_device pd[3] = {{0}, {0}, {1}};
    struct moecl_plan plan;
    REQUIRE(moecl_plan_build(&p, pd, 3, &plan) == MOECL_OK);
    REQUIRE(plan.n_ops == 2 + 2 * 4);
    CHECK_EQ(plan.ops[0].kind, MOECL_OP_EMBED);
    CHECK_EQ(plan.ops[1].kind, MOECL_OP_ATTN);
    CHECK_EQ(plan.ops[1].in, MOECL_HANDOFF_NONE); /* embed and attn 0 both on nvidia:0 */
    CHECK_EQ(plan.ops[2].kind, MOECL_OP_EXPERTS);
    CHECK_EQ(plan.ops[2].device, 0);
    CHECK_EQ(plan.ops[2].in, MOECL_HANDOFF_HOST);
    CHECK_EQ(plan.ops[2].back, MOECL_HANDOFF_HOST);
    CHECK_EQ(plan.ops[5].layer, 2); /* attn 2 on pocl:0: the residual crosses contexts */
    CHECK_EQ(plan.ops[5].in, MOECL_HANDOFF_HOST);
    CHECK_EQ(plan.ops[6].in, MOECL_HANDOFF_HOST); /* experts 2 on nvidia:0 */
    CHECK_EQ(plan.ops[7].in, MOECL_HANDOFF_HOST); /* attn 3 back on nvidia:0 */
    CHECK_EQ(plan.ops[8].in, MOECL_HANDOFF_HOST); /* experts 3 on pocl:1 */
    CHECK_EQ(plan.ops[9].kind, MOECL_OP_HEAD);
    CHECK_EQ(plan.ops[9].in, MOECL_HANDOFF_NONE);
    CHECK_EQ(plan.n_handoffs[MOECL_HANDOFF_HOST], 10);
    CHECK_EQ(plan.n_handoffs[MOECL_HANDOFF_EVENT], 0);
    /* all in one context: the same hand-offs become event dependencies */
    struct moecl_plan_device one[3] = {{0}, {0}, {0}};
    struct moecl_plan plan2;
    REQUIRE(moecl_plan_build(&p, one, 3, &plan2) == MOECL_OK);
    CHECK_EQ(plan2.n_handoffs[MOECL_HANDOFF_EVENT], 10);
    CHECK_EQ(plan2.n_handoffs[MOECL_HANDOFF_HOST], 0);
    char buf[2048];
    moecl_plan_describe(&plan, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "EXPERTS 0 @0 <- @2 (host) back (host)");
    moecl_plan_free(&plan);
    moecl_plan_free(&plan2);
    moecl_placement_free(&p);
}
