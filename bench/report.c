/*
 * report.c - what a load scenario's run reports, the same way for echo, rr
 * and bulk: a human summary on stdout and, with --json, one document
 *
 *   {"mode", "time", "command", "env", "params": {...every option...},
 *    "results": {"ops", "ops_per_s", "bytes", "bytes_per_s", "errors",
 *                "errors_by_kind", ["first_error"], "load_cpu_s",
 *                ["server_cpu_s", "server_cpu_us_per_op" | "..._per_mib"],
 *                "conns_open", ["latency_us": {...}],
 *                ["tls": {"handshakes", "resumed", "negotiated"}]}}
 *
 * bulk's ops are bytes, so its server CPU is per MiB and it has no
 * latencies; echo and rr count payload bytes received. "tls" is there
 * with --tls: the handshakes done inside the window (rr's first ones are
 * before it) and what the first handshake of the run settled on.
 */
#include <stdlib.h>
#include <string.h>

#include "load.h"

static double per_s(const struct cs__load_cfg *cfg, uint64_t v)
{
	return (double)v / cfg->duration;
}

/* Server CPU per op (us), or per MiB for bulk; NaN when unknown. */
static double server_cpu_per_unit(const struct cs__load_cfg *cfg,
				  const struct cs__load_result *r)
{
	double units = cfg->sc->latency ? (double)r->ops : (double)r->bytes / 1048576.0;

	if (r->server_cpu_ns < 0 || units <= 0)
		return 0.0 / 0.0;
	return (double)r->server_cpu_ns / 1e3 / units;
}

static void print_errors(const struct cs__load_result *r)
{
	const char *sep = "";

	if (!r->errors) {
		printf("  errors       0\n");
		return;
	}
	printf("  errors       %llu (", (unsigned long long)r->errors);
	for (int k = 0; k < CS__ERR_KINDS; k++) {
		if (!r->errors_by_kind[k])
			continue;
		printf("%s%s %llu", sep, cs__err_name(k),
		       (unsigned long long)r->errors_by_kind[k]);
		sep = ", ";
	}
	printf("; first: %s)\n", r->first_error);
}

static void print_summary(const struct cs__load_cfg *cfg, const struct cs__load_result *r)
{
	const struct cs__hist *h = &r->hist;
	const char *unit = cfg->sc->latency ? "op" : "MiB";

	printf("%s %s: ", cfg->mode, cfg->target_str);
	cfg->sc->describe(stdout, cfg);
	if (cfg->rate > 0)
		printf(", open loop at %.0f/s", cfg->rate);
	else if (cfg->sc->latency)
		printf(", closed loop");
	printf(", %.3g s (+%.3g s warmup), %llu thread%s\n", cfg->duration, cfg->warmup,
	       (unsigned long long)cfg->threads, cfg->threads == 1 ? "" : "s");
	if (cfg->sc->latency) {
		printf("  ops          %llu (%.1f/s), %.2f MB/s received\n",
		       (unsigned long long)r->ops, per_s(cfg, r->ops),
		       per_s(cfg, r->bytes) / 1e6);
		printf("  latency us   min %llu  mean %.1f  p50 %llu  p90 %llu  p99 %llu  "
		       "p99.9 %llu  max %llu\n",
		       (unsigned long long)(h->count ? h->min : 0), cs__hist_mean(h),
		       (unsigned long long)cs__hist_percentile(h, 50),
		       (unsigned long long)cs__hist_percentile(h, 90),
		       (unsigned long long)cs__hist_percentile(h, 99),
		       (unsigned long long)cs__hist_percentile(h, 99.9),
		       (unsigned long long)h->max);
	} else {
		printf("  bytes        %llu (%.3f GB/s)\n", (unsigned long long)r->bytes,
		       per_s(cfg, r->bytes) / 1e9);
	}
	print_errors(r);
	if (cfg->tls)
		printf("  tls          %s; %llu handshakes (%llu resumed)\n",
		       r->negotiated[0] ? r->negotiated : "no handshake",
		       (unsigned long long)r->handshakes, (unsigned long long)r->resumed);
	if (r->conns_open < cfg->conns && !cfg->sc->churn)
		printf("  connections  %llu of %llu still open at the end\n",
		       (unsigned long long)r->conns_open, (unsigned long long)cfg->conns);
	if (r->server_cpu_ns >= 0)
		printf("  server CPU   %.2f s (%.0f%% of a CPU), %.2f us per %s\n",
		       (double)r->server_cpu_ns / 1e9,
		       100.0 * (double)r->server_cpu_ns / 1e9 / cfg->duration,
		       server_cpu_per_unit(cfg, r), unit);
	printf("  load CPU     %.2f s (%.0f%% of a CPU over %llu thread%s)\n",
	       (double)r->load_cpu_ns / 1e9,
	       100.0 * (double)r->load_cpu_ns / 1e9 / cfg->duration,
	       (unsigned long long)cfg->threads, cfg->threads == 1 ? "" : "s");
	cs__print_env(stdout);
}

static void json_params(struct cs__json *j, const struct cs__load_cfg *cfg)
{
	cs__json_begin(j, "params");
	cs__json_str(j, "target", cfg->target_str);
	cs__json_u64(j, cfg->conns_opt + 2, cfg->conns); /* "conns" / "streams" */
	if (cfg->sc->latency) {
		cs__json_str(j, "loop", cfg->rate > 0 ? "open" : "closed");
		cs__json_num(j, "rate_per_s", cfg->rate);
	}
	cs__json_u64(j, "tls", (uint64_t)cfg->tls);
	cs__json_str(j, "tls_ca", cfg->tls_ca ? cfg->tls_ca : "");
	cfg->sc->params(j, cfg);
	cs__json_num(j, "duration_s", cfg->duration);
	cs__json_num(j, "warmup_s", cfg->warmup);
	cs__json_u64(j, "threads", cfg->threads);
	cs__json_i64(j, "pid", cfg->pid);
	cs__json_end(j);
}

static void json_latency(struct cs__json *j, const struct cs__hist *h)
{
	cs__json_begin(j, "latency_us");
	cs__json_u64(j, "count", h->count);
	cs__json_u64(j, "min", h->count ? h->min : 0);
	cs__json_num(j, "mean", cs__hist_mean(h));
	cs__json_u64(j, "p50", cs__hist_percentile(h, 50));
	cs__json_u64(j, "p90", cs__hist_percentile(h, 90));
	cs__json_u64(j, "p99", cs__hist_percentile(h, 99));
	cs__json_u64(j, "p99_9", cs__hist_percentile(h, 99.9));
	cs__json_u64(j, "max", h->max);
	cs__json_end(j);
}

static void json_results(struct cs__json *j, const struct cs__load_cfg *cfg,
			 const struct cs__load_result *r)
{
	cs__json_begin(j, "results");
	cs__json_u64(j, "ops", r->ops);
	cs__json_num(j, "ops_per_s", per_s(cfg, r->ops));
	cs__json_u64(j, "bytes", r->bytes);
	cs__json_num(j, "bytes_per_s", per_s(cfg, r->bytes));
	cs__json_u64(j, "errors", r->errors);
	cs__json_begin(j, "errors_by_kind");
	for (int k = 0; k < CS__ERR_KINDS; k++)
		cs__json_u64(j, cs__err_name(k), r->errors_by_kind[k]);
	cs__json_end(j);
	if (r->errors)
		cs__json_str(j, "first_error", r->first_error);
	cs__json_num(j, "load_cpu_s", (double)r->load_cpu_ns / 1e9);
	if (r->server_cpu_ns >= 0) {
		cs__json_num(j, "server_cpu_s", (double)r->server_cpu_ns / 1e9);
		cs__json_num(j, cfg->sc->latency ? "server_cpu_us_per_op" : "server_cpu_us_per_mib",
			     server_cpu_per_unit(cfg, r));
	}
	cs__json_u64(j, "conns_open", r->conns_open);
	if (cfg->sc->latency)
		json_latency(j, &r->hist);
	if (cfg->tls) {
		cs__json_begin(j, "tls");
		cs__json_u64(j, "handshakes", r->handshakes);
		cs__json_u64(j, "resumed", r->resumed);
		cs__json_str(j, "negotiated", r->negotiated);
		cs__json_end(j);
	}
	cs__json_end(j);
}

void cs__load_report(const struct cs__load_cfg *cfg, const struct cs__load_result *r,
		     int argc, char **argv)
{
	struct cs__json j;

	print_summary(cfg, r);
	if (!cfg->json)
		return;
	int err = cs__json_open(&j, cfg->json);
	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
	cs__json_begin(&j, NULL);
	cs__json_str(&j, "mode", cfg->mode);
	cs__json_env(&j, argc, argv);
	json_params(&j, cfg);
	json_results(&j, cfg, r);
	cs__json_end(&j);
	err = cs__json_close(&j);
	if (err)
		cs__fail("--json %s: %s", cfg->json, strerror(-err));
}
