/*
 * test_mime.c - ws/mime.c: media types by extension, case-insensitive,
 * charset on text types, the default for unknown or missing extensions,
 * and that only the last component's last extension counts.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "mime.h"

TestSuite(mime, .timeout = 30);

static const char *type_of(const char *name)
{
	return cs_mime_type(name, strlen(name));
}

Test(mime, known_extensions)
{
	static const char *const t[][2] = {
		{"index.html", "text/html; charset=utf-8"},
		{"a.htm", "text/html; charset=utf-8"},
		{"s.css", "text/css; charset=utf-8"},
		{"app.js", "text/javascript; charset=utf-8"},
		{"m.mjs", "text/javascript; charset=utf-8"},
		{"d.json", "application/json; charset=utf-8"},
		{"r.txt", "text/plain; charset=utf-8"},
		{"f.xml", "application/xml; charset=utf-8"},
		{"i.svg", "image/svg+xml; charset=utf-8"},
		{"c.csv", "text/csv; charset=utf-8"},
		{"x.map", "application/json; charset=utf-8"},
		{"p.png", "image/png"},
		{"p.jpg", "image/jpeg"},
		{"p.jpeg", "image/jpeg"},
		{"p.gif", "image/gif"},
		{"p.webp", "image/webp"},
		{"favicon.ico", "image/vnd.microsoft.icon"},
		{"m.wasm", "application/wasm"},
		{"d.pdf", "application/pdf"},
		{"f.woff", "font/woff"},
		{"f.woff2", "font/woff2"},
		{"v.mp4", "video/mp4"},
		{"v.webm", "video/webm"},
		{"a.mp3", "audio/mpeg"},
		{"a.wav", "audio/wav"},
		{"z.zip", "application/zip"},
		{"z.gz", "application/gzip"},
		{"z.tar", "application/x-tar"},
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		cr_expect_str_eq(type_of(t[i][0]), t[i][1], "%s", t[i][0]);
}

Test(mime, case_paths_and_defaults)
{
	cr_expect_str_eq(type_of("INDEX.HTML"), "text/html; charset=utf-8");
	cr_expect_str_eq(type_of("Photo.JpG"), "image/jpeg");
	cr_expect_str_eq(type_of("/www/dir.d/page.css"), "text/css; charset=utf-8");
	cr_expect_str_eq(type_of("archive.tar.gz"), "application/gzip");
	cr_expect_str_eq(type_of("/www/dir.html/README"), "application/octet-stream");
	cr_expect_str_eq(type_of("noext"), "application/octet-stream");
	cr_expect_str_eq(type_of("trailingdot."), "application/octet-stream");
	cr_expect_str_eq(type_of("x.unknown"), "application/octet-stream");
	cr_expect_str_eq(type_of("x.htmlx"), "application/octet-stream");
	cr_expect_str_eq(type_of("x.ht"), "application/octet-stream");
	cr_expect_str_eq(type_of(""), "application/octet-stream");
	cr_expect_str_eq(cs_mime_type(NULL, 0), "application/octet-stream");
	/* Only len bytes count. */
	cr_expect_str_eq(cs_mime_type("a.json", 5), "application/octet-stream");
	cr_expect_str_eq(cs_mime_type("a.jsonp", 4), "text/javascript; charset=utf-8");
	/* A dot file is a name, not an extension... unless it is one. */
	cr_expect_str_eq(type_of(".html"), "text/html; charset=utf-8");
}
