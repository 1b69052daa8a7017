/* Unicode character classes for the o200k pre-tokenizer (runtime/tokenizer.c).
 *
 * The table is generated at build time by tools/gen_unicode.c from Debian's `unicode-data`
 * package (UnicodeData.txt for General_Category, PropList.txt for White_Space) into
 * build/gen/unicode_tables.c. The Unicode version is pinned in the Makefile (UNICODE_VERSION) and
 * the generator refuses a different one; moecl_unicode_version names it.
 *
 * Each code point maps to a byte of MOECL_UC_* flags, looked up in a two-level table: stage1
 * holds, for each 256-code-point block, the index of its (deduplicated) 256-byte block in stage2.
 * Unassigned code points, surrogates and private use have no flag. */
#ifndef MOECL_UNICODE_CLASS_H
#define MOECL_UNICODE_CLASS_H

#include <stddef.h>
#include <stdint.h>

#define MOECL_UC_UP 0x01u     /* [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]: the regex's "upper" run class */
#define MOECL_UC_LO 0x02u     /* [\p{Ll}\p{Lm}\p{Lo}\p{M}]: the regex's "lower" run class */
#define MOECL_UC_LETTER 0x04u /* \p{L} = Lu Ll Lt Lm Lo */
#define MOECL_UC_NUMBER 0x08u /* \p{N} = Nd Nl No */
#define MOECL_UC_SPACE 0x10u  /* \s = the White_Space property (25 code points) */
#define MOECL_UC_MARK 0x20u   /* \p{M} = Mn Mc Me */

#define MOECL_UNICODE_N_BLOCKS (0x110000 >> 8)

extern const char moecl_unicode_version[];                          /* e.g. "15.0.0" */
extern const uint16_t moecl_unicode_stage1[MOECL_UNICODE_N_BLOCKS]; /* block -> stage2 block */
extern const uint8_t moecl_unicode_stage2[];                        /* [n_unique_blocks][256] */

/* The MOECL_UC_* flags of a code point (0 for anything past U+10FFFF). */
static inline unsigned moecl_unicode_class(uint32_t cp) {
    if (cp >= 0x110000u)
        return 0;
    return moecl_unicode_stage2[((size_t)moecl_unicode_stage1[cp >> 8] << 8) | (cp & 0xffu)];
}

#endif
