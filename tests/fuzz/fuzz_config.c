/* libFuzzer target: config.json and its quantization records on arbitrary text.
 *
 * A config that parses must have the invariants the loader relies on (positive sizes, heads
 * divisible by kv heads, a layer_types entry per layer), and every quantization setting it
 * yields must be one MLX supports. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    struct moecl_config c;
    if (moecl_config_parse("fuzz/config.json", text, size, &c) == MOECL_OK) {
        if (c.hidden_size <= 0 || c.n_layers <= 0 || c.n_kv_heads <= 0 ||
            c.n_heads % c.n_kv_heads != 0 || c.n_experts_per_tok > c.n_experts ||
            !c.layer_sliding)
            abort();
        volatile int s = 0;
        for (int i = 0; i < c.n_layers; i++)
            s += c.layer_sliding[i];
        moecl_config_free(&c);
    }
    struct moecl_qconfig q;
    if (moecl_qconfig_parse("fuzz/config.json", text, size, &q) == MOECL_OK) {
        static const char *const paths[] = {"lm_head", "model.embed_tokens",
                                            "model.layers.0.mlp.router",
                                            "model.layers.0.mlp.experts.gate_proj"};
        for (int i = 0; i < q.n_overrides; i++)
            if (moecl_qspec_check(&q.overrides[i].spec, "override") != MOECL_OK)
                abort();
        for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
            for (int has = 0; has < 2; has++) {
                struct moecl_qspec s;
                if (moecl_qconfig_decide(&q, paths[i], has, &s) == MOECL_OK &&
                    moecl_qspec_check(&s, paths[i]) != MOECL_OK)
                    abort();
            }
        moecl_qconfig_free(&q);
    }
    return 0;
}
