/*
 * mime.c - media types of static files by extension: the short list a web
 * server needs for pages, scripts, images, fonts and common downloads.
 */
#include <strings.h>

#include "mime.h"

#define TEXT(t) t "; charset=utf-8"

static const struct {
	const char *ext;
	const char *type;
} types[] = {
	{"html", TEXT("text/html")},
	{"htm", TEXT("text/html")},
	{"css", TEXT("text/css")},
	{"js", TEXT("text/javascript")},
	{"mjs", TEXT("text/javascript")},
	{"json", TEXT("application/json")},
	{"map", TEXT("application/json")},
	{"txt", TEXT("text/plain")},
	{"md", TEXT("text/markdown")},
	{"csv", TEXT("text/csv")},
	{"xml", TEXT("application/xml")},
	{"svg", TEXT("image/svg+xml")},
	{"png", "image/png"},
	{"jpg", "image/jpeg"},
	{"jpeg", "image/jpeg"},
	{"gif", "image/gif"},
	{"webp", "image/webp"},
	{"avif", "image/avif"},
	{"ico", "image/vnd.microsoft.icon"},
	{"bmp", "image/bmp"},
	{"wasm", "application/wasm"},
	{"pdf", "application/pdf"},
	{"woff", "font/woff"},
	{"woff2", "font/woff2"},
	{"ttf", "font/ttf"},
	{"otf", "font/otf"},
	{"mp4", "video/mp4"},
	{"webm", "video/webm"},
	{"mp3", "audio/mpeg"},
	{"ogg", "audio/ogg"},
	{"wav", "audio/wav"},
	{"zip", "application/zip"},
	{"gz", "application/gzip"},
	{"tar", "application/x-tar"},
};

const char *cs_mime_type(const char *name, size_t len)
{
	size_t dot = len;

	/* The extension is after the last dot of the last path component. */
	while (dot > 0 && name[dot - 1] != '.' && name[dot - 1] != '/')
		dot--;
	if (dot == 0 || name[dot - 1] != '.')
		return "application/octet-stream";
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		size_t n = 0;

		while (types[i].ext[n])
			n++;
		if (n == len - dot && strncasecmp(name + dot, types[i].ext, n) == 0)
			return types[i].type;
	}
	return "application/octet-stream";
}
