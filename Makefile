# moecl — build, tests, sanitizers, checks.
#
#   make deps         install the Debian packages (idempotent)
#   make              build/libmoecl.a, build/moecl, build/mkmodel
#   make test         run the test suite on PoCL
#   make asan         run the test suite under AddressSanitizer + UBSan
#   make check        format check + static analysis + test + asan
#
# Sources are discovered by wildcard; tests register themselves with TEST(name) and
# commands with MOECL_COMMAND(name, ...), collected into generated lists under build/gen.

CC       ?= cc
BUILD    ?= build
OPT      ?= -O2
WARN     := -Wall -Wextra -Wpedantic -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wpointer-arith -Wcast-qual -Wformat=2 -Wundef -Wvla
DEFS     := -D_GNU_SOURCE -DCL_TARGET_OPENCL_VERSION=300
INC      := -Iruntime -Iloader -Ischeduler -Icl_kernels -I$(BUILD)/gen
CFLAGS   += -std=c11 $(OPT) -g $(WARN) $(DEFS) -MMD -MP -pthread
LDLIBS   := -lOpenCL -lcjson -lm -lpthread
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

LIB_SRC   := $(wildcard runtime/*.c loader/*.c scheduler/*.c)
CL_SRC    := $(wildcard cl_kernels/*.cl cl_kernels/*.h)
TOOL_SRC  := $(wildcard tools/moecl_main.c tools/cmd_*.c tools/cli_*.c)
MKMODEL_SRC := $(wildcard tools/mkmodel*.c)
TEST_SRC  := $(wildcard tests/*.c)
GEN_CL    := $(BUILD)/gen/cl_sources.c
GEN_TESTS := $(BUILD)/gen/test_list.h
GEN_CMDS  := $(BUILD)/gen/command_list.h
GEN_TOOLS := $(wildcard tools/gen_*.c)

obj = $(patsubst %.c,$(1)/obj/%.o,$(2))

LIB_OBJ      := $(call obj,$(BUILD),$(LIB_SRC)) $(BUILD)/obj/gen/cl_sources.o
LIB_OBJ      += $(BUILD)/obj/gen/unicode_tables.o
TOOL_OBJ     := $(call obj,$(BUILD),$(TOOL_SRC))
MKMODEL_OBJ  := $(call obj,$(BUILD),$(MKMODEL_SRC))
TEST_OBJ     := $(call obj,$(BUILD),$(TEST_SRC))
ALIB_OBJ     := $(call obj,$(BUILD)/asan,$(LIB_SRC)) $(BUILD)/asan/obj/gen/cl_sources.o
ALIB_OBJ     += $(BUILD)/asan/obj/gen/unicode_tables.o
ATEST_OBJ    := $(call obj,$(BUILD)/asan,$(TEST_SRC))
ATOOL_OBJ    := $(call obj,$(BUILD)/asan,$(TOOL_SRC))
AMKMODEL_OBJ := $(call obj,$(BUILD)/asan,$(MKMODEL_SRC))

.PHONY: all deps test asan check format format-check lint clean fixtures conformance tokcheck tokbench fuzz fuzz-smoke kl-table
.DEFAULT_GOAL := all

all: $(BUILD)/libmoecl.a $(BUILD)/moecl $(BUILD)/mkmodel

deps:
	@bash scripts/deps.sh

# ---------------------------------------------------------------- generated sources
$(BUILD)/embed_cl: tools/embed_cl.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -O1 $(WARN) -o $@ $<

$(GEN_CL): $(BUILD)/embed_cl $(CL_SRC)
	@mkdir -p $(@D)
	$(BUILD)/embed_cl $@ $(sort $(CL_SRC))

$(GEN_TESTS): $(TEST_SRC)
	@mkdir -p $(@D)
	@sed -n 's/^TEST(\([A-Za-z0-9_]*\)).*/X(\1)/p' $(sort $(TEST_SRC)) > $@.tmp && mv $@.tmp $@

$(GEN_CMDS): $(TOOL_SRC)
	@mkdir -p $(@D)
	@sed -n 's/^MOECL_COMMAND(\([a-z_]*\),.*/X(\1)/p' $(sort $(TOOL_SRC)) > $@.tmp && mv $@.tmp $@

# Unicode class table for the tokenizer's pre-tokenizer, from Debian's unicode-data package.
# The version is pinned: the generator refuses data of another version.
UNICODE_DIR     ?= /usr/share/unicode
UNICODE_VERSION := 15.0.0
GEN_UNICODE     := $(BUILD)/gen/unicode_tables.c

$(BUILD)/gen_unicode: tools/gen_unicode.c runtime/unicode_class.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -O1 $(WARN) -Iruntime -o $@ $<

$(GEN_UNICODE): $(BUILD)/gen_unicode
	@mkdir -p $(@D)
	$(BUILD)/gen_unicode $(UNICODE_DIR) $(UNICODE_VERSION) $@

$(BUILD)/obj/gen/unicode_tables.o: $(GEN_UNICODE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(BUILD)/asan/obj/gen/unicode_tables.o: $(GEN_UNICODE)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) $(INC) -c -o $@ $<

# ---------------------------------------------------------------- normal build
$(BUILD)/obj/%.o: %.c | $(GEN_TESTS) $(GEN_CMDS) $(GEN_CL)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) $(INC) -c -o $@ $<

$(BUILD)/obj/gen/cl_sources.o: $(GEN_CL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Wno-overlength-strings $(INC) -c -o $@ $<

$(BUILD)/libmoecl.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/moecl: $(TOOL_OBJ) $(BUILD)/libmoecl.a
	$(CC) $(CFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libmoecl.a $(LDLIBS)

$(BUILD)/mkmodel: $(MKMODEL_OBJ) $(BUILD)/libmoecl.a
	$(CC) $(CFLAGS) -o $@ $(MKMODEL_OBJ) $(BUILD)/libmoecl.a $(LDLIBS)

$(BUILD)/moecl_tests: $(TEST_OBJ) $(BUILD)/libmoecl.a
	$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libmoecl.a $(LDLIBS)

# ---------------------------------------------------------------- sanitizer build
$(BUILD)/asan/obj/%.o: %.c | $(GEN_TESTS) $(GEN_CMDS) $(GEN_CL)
	@mkdir -p $(@D)
	@echo "  CC/SAN  $<"
	@$(CC) $(CFLAGS) $(SAN) $(INC) -c -o $@ $<

$(BUILD)/asan/obj/gen/cl_sources.o: $(GEN_CL)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -Wno-overlength-strings $(INC) -c -o $@ $<

$(BUILD)/asan/libmoecl.a: $(ALIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/asan/moecl: $(ATOOL_OBJ) $(BUILD)/asan/libmoecl.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(ATOOL_OBJ) $(BUILD)/asan/libmoecl.a $(LDLIBS)

$(BUILD)/asan/mkmodel: $(AMKMODEL_OBJ) $(BUILD)/asan/libmoecl.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(AMKMODEL_OBJ) $(BUILD)/asan/libmoecl.a $(LDLIBS)

$(BUILD)/asan/moecl_tests: $(ATEST_OBJ) $(BUILD)/asan/libmoecl.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $(ATEST_OBJ) $(BUILD)/asan/libmoecl.a $(LDLIBS)

# ---------------------------------------------------------------- fuzzing (libFuzzer, clang)
# Targets in tests/fuzz/ (not tests/*.c, so the runner ignores them), built with the loader
# sources they exercise under ASan+UBSan. `make fuzz-smoke` runs each ~20 s from the seeds.
FUZZ_CC      ?= clang
FUZZ_FLAGS   := -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                $(DEFS) $(INC)
FUZZ_LIB_SRC := loader/safetensors.c loader/dtype.c loader/config.c runtime/status.c
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_TIME    ?= 20

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_SRC) $(wildcard loader/*.h runtime/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB_SRC) -lcjson -lm

# The tokenizer target also needs the tokenizer sources and the generated Unicode table.
FUZZ_TOKENIZER_SRC := runtime/tokenizer.c runtime/pretokenize.c loader/tokenizer_json.c $(GEN_UNICODE)
$(BUILD)/fuzz/fuzz_tokenizer: tests/fuzz/fuzz_tokenizer.c $(FUZZ_LIB_SRC) $(FUZZ_TOKENIZER_SRC) \
		$(wildcard loader/*.h runtime/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LIB_SRC) $(FUZZ_TOKENIZER_SRC) -lcjson -lm

fuzz: $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_TARGETS)
	@for t in safetensors config tokenizer; do \
		mkdir -p $(BUILD)/fuzz/corpus_$$t && cp tests/fuzz/seeds/$$t/* $(BUILD)/fuzz/corpus_$$t/ || exit 1; \
		if $(BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
			-artifact_prefix=$(BUILD)/fuzz/crash_$$t- $(BUILD)/fuzz/corpus_$$t \
			> $(BUILD)/fuzz/smoke_$$t.log 2>&1; then \
			echo "fuzz_$$t: $$(grep -o 'number_of_executed_units: [0-9]*' $(BUILD)/fuzz/smoke_$$t.log | \
				grep -o '[0-9]*$$') executions, no crash"; \
		else tail -n 40 $(BUILD)/fuzz/smoke_$$t.log; exit 1; fi; \
	done

# ---------------------------------------------------------------- running
# The suite runs on PoCL with two CPU devices so that multi-device tests have a second one.
# MOECL_BIN tells tests which command binary to drive end to end.
TEST_ENV := POCL_DEVICES="pthread pthread" MOECL_CL_CACHE_DIR=$(BUILD)/clcache
# PoCL leaks by design at exit and its LLVM JIT trips LeakSanitizer; leaks are checked
# separately on the pure-C suites (loader, tokenizer) with MOECL_TEST_LEAKS.
ASAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1

test: $(BUILD)/moecl_tests $(BUILD)/moecl $(BUILD)/mkmodel
	$(TEST_ENV) MOECL_BIN=$(BUILD)/moecl MOECL_MKMODEL=$(BUILD)/mkmodel $(BUILD)/moecl_tests $(T)

asan: $(BUILD)/asan/moecl_tests $(BUILD)/asan/moecl $(BUILD)/asan/mkmodel
	$(TEST_ENV) $(ASAN_ENV) MOECL_BIN=$(BUILD)/asan/moecl MOECL_MKMODEL=$(BUILD)/asan/mkmodel \
		MOECL_TEST_ASAN=1 $(BUILD)/asan/moecl_tests $(T)

FORMAT_SRC = $(wildcard runtime/*.[ch] loader/*.[ch] scheduler/*.[ch] tools/*.[ch] tests/*.[ch] cl_kernels/*.h)

format:
	clang-format -i $(FORMAT_SRC)

format-check:
	clang-format --dry-run -Werror $(FORMAT_SRC)

lint: $(GEN_TESTS) $(GEN_CMDS)
	cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
		--enable=warning,portability --suppress=missingIncludeSystem \
		$(INC) $(DEFS) runtime loader scheduler tools tests

check: format-check lint test asan

fixtures:
	bash tests/reference/make_fixtures.sh tests/fixtures

conformance: $(BUILD)/moecl_tests
	bash tests/reference/conformance.sh

# Tokenizer exactness against HF tokenizers and tiktoken on a > 10 MB corpus (Python venv).
tokcheck: $(BUILD)/moecl
	py="$$(bash tests/reference/setup_venv.sh | tail -n 1)" && \
		"$$py" tests/reference/tokenizer_check.py --moecl $(BUILD)/moecl

# Tokenizer encode throughput beside tiktoken, single thread, same corpus.
tokbench: $(BUILD)/moecl
	py="$$(bash tests/reference/setup_venv.sh | tail -n 1)" && \
		"$$py" tests/reference/tokenizer_bench.py --moecl $(BUILD)/moecl

# KL divergence / same-top-token table of the fixture recipes against f32 (README).
kl-table: $(BUILD)/moecl
	MOECL_CL_CACHE_DIR=$(BUILD)/clcache bash scripts/kl_table.sh tests/fixtures $(BUILD)/moecl

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
