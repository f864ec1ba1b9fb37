/*
 * mime.h - the Content-Type a static file is served with.
 */
#ifndef CS_WS_MIME_H
#define CS_WS_MIME_H

#include <stddef.h>

/* The media type for a file name, by its extension (case-insensitive):
 * html, htm, css, js, mjs, json, txt, xml, svg, png, jpg, jpeg, gif, webp,
 * ico, wasm, pdf, woff, woff2, map, csv, mp4, webm, mp3, wav, zip, gz, tar
 * and a few more. Text types carry "; charset=utf-8". Unknown or missing
 * extensions give "application/octet-stream". Never NULL. */
const char *cs_mime_type(const char *name, size_t len);

#endif
