/*
 * lsp.h - Lua Server Pages: an .lsp file translated into one Lua chunk.
 *
 * Page syntax (the original product's):
 *   text            sent as it is
 *   <?lsp code ?>   Lua code, run where it stands
 *   <?lsp= expr ?>  and <?= expr ?>: the value of expr, as tostring shows it
 * A page that is only code (no text, no tags) is not special: wrap it in
 * <?lsp ?> as the original product requires.
 *
 * The chunk takes two functions as its varargs, emit(string) for text and
 * emitv(value) for expressions, into locals declared on its first line
 * (so no name leaks into the page's environment). Line numbers in the
 * chunk are the page's own, so Lua errors point at the right line of the
 * .lsp file. Nothing here knows of Lua beyond writing its source text.
 */
#ifndef CS_WS_LSP_H
#define CS_WS_LSP_H

#include <stddef.h>

/* Translate src[0..len). Returns a malloc'd, NUL-terminated Lua chunk (its
 * length in *out_len), or NULL: out of memory, or an unterminated tag, in
 * which case err (errlen bytes) says where ("line 12: <?lsp without ?>"). */
char *cs_lsp_translate(const char *src, size_t len, size_t *out_len, char *err, size_t errlen);

#endif
