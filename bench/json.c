/*
 * json.c - a small streaming JSON writer and the environment record that
 * every cosockd-bench result carries.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

int cs__json_open(struct cs__json *j, const char *path)
{
	memset(j, 0, sizeof(*j));
	j->f = fopen(path, "w");
	return j->f ? 0 : -errno;
}

int cs__json_close(struct cs__json *j)
{
	fputc('\n', j->f);
	int bad = ferror(j->f);
	if (fclose(j->f) != 0)
		return -errno;
	return bad ? -EIO : 0;
}

static void put_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

/* Comma, newline, indentation and key before a member. */
static void member(struct cs__json *j, const char *key)
{
	if (j->depth > 0) {
		fputs(j->count[j->depth]++ ? ",\n" : "\n", j->f);
		fprintf(j->f, "%*s", 2 * j->depth, "");
	}
	if (key) {
		put_string(j->f, key);
		fputs(": ", j->f);
	}
}

void cs__json_begin(struct cs__json *j, const char *key)
{
	member(j, key);
	fputc('{', j->f);
	if (j->depth + 1 < CS__JSON_DEPTH)
		j->count[++j->depth] = 0;
}

void cs__json_end(struct cs__json *j)
{
	int had = j->count[j->depth];

	if (j->depth > 0)
		j->depth--;
	if (had)
		fprintf(j->f, "\n%*s", 2 * j->depth, "");
	fputc('}', j->f);
}

void cs__json_str(struct cs__json *j, const char *key, const char *val)
{
	member(j, key);
	put_string(j->f, val);
}

void cs__json_u64(struct cs__json *j, const char *key, uint64_t val)
{
	member(j, key);
	fprintf(j->f, "%llu", (unsigned long long)val);
}

void cs__json_i64(struct cs__json *j, const char *key, int64_t val)
{
	member(j, key);
	fprintf(j->f, "%lld", (long long)val);
}

void cs__json_num(struct cs__json *j, const char *key, double val)
{
	member(j, key);
	if (val != val) /* NaN is not JSON */
		fputs("null", j->f);
	else
		fprintf(j->f, "%.6g", val);
}

/* The "model name" line of /proc/cpuinfo, or "unknown". */
static void cpu_model(char *buf, size_t len)
{
	char line[512];
	FILE *f = fopen("/proc/cpuinfo", "r");

	snprintf(buf, len, "unknown");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (strncmp(line, "model name", 10) != 0 || !colon)
			continue;
		colon += 1 + (colon[1] == ' ');
		colon[strcspn(colon, "\n")] = '\0';
		snprintf(buf, len, "%s", colon);
		break;
	}
	fclose(f);
}

void cs__json_env(struct cs__json *j, int argc, char **argv)
{
	char model[256], stamp[32], cmd[4096];
	struct utsname u;
	struct rlimit rl = {0, 0};
	time_t now = time(NULL);
	size_t off;

	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	cs__json_str(j, "time", stamp);
	off = (size_t)snprintf(cmd, sizeof(cmd), "cosockd-bench");
	for (int i = 0; i < argc && off < sizeof(cmd); i++)
		off += (size_t)snprintf(cmd + off, sizeof(cmd) - off, " %s", argv[i]);
	cs__json_str(j, "command", cmd);

	uname(&u);
	cpu_model(model, sizeof(model));
	getrlimit(RLIMIT_NOFILE, &rl);
	cs__json_begin(j, "env");
	cs__json_str(j, "kernel", u.release);
	cs__json_str(j, "kernel_version", u.version);
	cs__json_str(j, "machine", u.machine);
	cs__json_i64(j, "cpus", sysconf(_SC_NPROCESSORS_ONLN));
	cs__json_str(j, "cpu_model", model);
	cs__json_begin(j, "rlimit_nofile");
	cs__json_u64(j, "soft", rl.rlim_cur);
	cs__json_u64(j, "hard", rl.rlim_max);
	cs__json_end(j);
	cs__json_str(j, "bench_version", COSOCKD_VERSION);
	cs__json_end(j);
}

void cs__print_env(FILE *f)
{
	char model[256];
	struct utsname u;
	struct rlimit rl = {0, 0};

	uname(&u);
	cpu_model(model, sizeof(model));
	getrlimit(RLIMIT_NOFILE, &rl);
	fprintf(f, "env: %s %s %s, %ld CPUs (%s), RLIMIT_NOFILE %llu/%llu\n",
		u.sysname, u.release, u.machine, sysconf(_SC_NPROCESSORS_ONLN),
		model, (unsigned long long)rl.rlim_cur,
		(unsigned long long)rl.rlim_max);
}
