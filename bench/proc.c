/*
 * proc.c - what a server process tree uses, from /proc.
 *
 * The server to measure is given by pid. If it forks workers, their memory,
 * CPU time and fds are the server's too, so every reader sums over the pid
 * and its descendants, found by one scan of the parent pids in /proc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

/* The fields of /proc/PID/stat we need. Returns 0 or -1. */
static int read_stat(pid_t pid, pid_t *ppid, uint64_t *ticks)
{
	char path[64], buf[1024];
	unsigned long long utime, stime;
	int pp;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm (field 2) may hold spaces and parentheses: count fields from
	 * the last ')'. ppid is field 4; utime and stime are 14 and 15. */
	char *p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, "%*s %d %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu",
			 &pp, &utime, &stime) != 3)
		return -1;
	*ppid = pp;
	*ticks = utime + stime;
	return 0;
}

static int64_t read_rss(pid_t pid)
{
	char path[64], line[256];
	int64_t kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		long long v;
		if (sscanf(line, "VmRSS: %lld kB", &v) == 1) {
			kb = v;
			break;
		}
	}
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

static int64_t count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	int64_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (!d)
		return -1;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

struct proc_link {
	pid_t pid, ppid;
};

/* (pid, ppid) of every process; *n set. NULL on failure. */
static struct proc_link *scan_procs(size_t *n)
{
	DIR *d = opendir("/proc");
	struct proc_link *v = NULL;
	size_t cap = 0;
	struct dirent *de;
	uint64_t ticks;

	*n = 0;
	if (!d)
		return NULL;
	while ((de = readdir(d))) {
		pid_t pid, ppid;
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (read_stat(pid, &ppid, &ticks) < 0)
			continue; /* exited meanwhile */
		if (*n == cap) {
			cap = cap ? 2 * cap : 256;
			struct proc_link *nv = realloc(v, cap * sizeof(*v));
			if (!nv)
				break;
			v = nv;
		}
		v[(*n)++] = (struct proc_link){pid, ppid};
	}
	closedir(d);
	return v;
}

/* Add one process's figures to u. */
static void add_proc(pid_t pid, struct cs__usage *u)
{
	pid_t ppid;
	uint64_t ticks;
	long hz = sysconf(_SC_CLK_TCK);
	int64_t rss = read_rss(pid), fds = count_fds(pid);

	if (read_stat(pid, &ppid, &ticks) < 0 || rss < 0)
		return; /* gone meanwhile */
	u->procs++;
	u->rss += rss;
	u->cpu_ns += (int64_t)(ticks * (CS__NS_PER_SEC / (uint64_t)(hz > 0 ? hz : 100)));
	if (fds < 0 || u->fds < 0)
		u->fds = -1;
	else
		u->fds += fds;
}

int cs__server_usage(pid_t pid, struct cs__usage *u)
{
	size_t n = 0;
	struct proc_link *all = scan_procs(&n);

	memset(u, 0, sizeof(*u));
	add_proc(pid, u);
	if (!u->procs) {
		free(all);
		return -1;
	}
	/* Breadth-first over the tree: queue[] holds the pids found so far. */
	pid_t *queue = malloc((n + 1) * sizeof(*queue));
	size_t head = 0, tail = 0;
	if (queue) {
		queue[tail++] = pid;
		while (head < tail) {
			pid_t parent = queue[head++];
			for (size_t i = 0; i < n && tail <= n; i++) {
				if (all[i].ppid != parent || all[i].pid == pid)
					continue;
				queue[tail++] = all[i].pid;
				add_proc(all[i].pid, u);
			}
		}
	}
	free(queue);
	free(all);
	return 0;
}
