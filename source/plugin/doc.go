// Package plugin reads the per-queue counts from RabbitMQ's
// rabbitmq_prometheus plugin: GET /metrics/detailed?family=queue_coarse_metrics
// on each cluster member, which lists the queues that member hosts.
//
// # What the plugin writes
//
// From rabbitmq-server's deps/rabbitmq_prometheus (tags v3.9.0 to v4.3.5)
// and prometheus.erl's src/formats/prometheus_text_format.erl (v4.4.0 to
// v6.1.1):
//
//   - Each family is one block, "# TYPE NAME TYPE", then "# HELP NAME TEXT",
//     then its samples; the answer ends with one empty line
//     (prometheus_text_format:format/1 writes "\n" last in every version).
//     No other comments, no timestamps.
//   - queue_coarse_metrics is four families, in this order:
//     rabbitmq_detailed_queue_messages_ready, _messages_unacked, _messages
//     and rabbitmq_detailed_queue_process_reductions_total. collect/6 reads
//     the table once (get_data: ets:tab2list, or one ets:foldl with a vhost
//     filter) and mf/4 renders all four from that one list, so they list the
//     same queues in the same order. The values are integers
//     (rabbit_core_metrics:queue_stats/5), written with integer_to_binary.
//   - The labels are pre-rendered by the plugin's label/1 as
//     <<"vhost=\"", VHost, "\",queue=\"", Name, "\"">>: vhost always before
//     queue. prometheus.erl passes pre-rendered (binary) labels through
//     untouched (render_labels(B) when is_binary(B) -> B), so escaping is the
//     plugin's business:
//   - 3.8.x: labels as [{vhost, VHost}, {queue, Name}] pairs, escaped by
//     prometheus.erl's escape_label_value (backslash, double quote, line
//     feed; every version of prometheus.erl does so). /metrics/detailed
//     appears in 3.9.7; 3.9.7 and 3.9.8 still use the pairs, so: escaped.
//   - 3.9.9 to 3.11.27 and 3.12.0 to 3.12.10: pre-rendered raw (commit
//     d223b38 "Pre-render prometheus labels", PR #3587). Verified on the test
//     broker (3.10.8, prometheus.erl 4.9.1): queue `q "double" quotes` is
//     written queue="q "double" quotes", a backslash as one backslash.
//   - 3.11.28, 3.12.11, 3.13.0-rc.4 and later (all of 4.x): escaped by the
//     plugin (commit fec09c0 "Escape prometheus core metric label values",
//     backported as eadf30c to 3.11.28 and 57d4281 to 3.12.11; 3.13 betas
//     and rc.1 to rc.3 were raw). Escaping is per prometheus.erl:
//     `\` -> `\\`, `"` -> `\"`, line feed -> `\n`, nothing else.
//   - prometheus.erl versions pinned (rabbitmq-components.mk): 4.4.0 (3.8.0)
//     to 4.6.0, 4.8.1 (3.8.23, 3.9.0), 4.8.2, 4.9.1 (3.10.8, 3.11.0), 4.10.0
//     (3.10.14, 3.11.7, 3.12.0), 4.11.0 (3.11.28, 3.12.11, 3.13, 4.0, 4.1),
//     5.1.1 (4.2.0), 6.1.1 (4.2.2 on). The client version does not decide
//     the label mode (4.8.1 shipped with escaping 3.9.0-3.9.8 and raw 3.9.x
//     alike); the plugin version does. Parse reads prometheus_plugin_version
//     (else rabbitmq_version) from rabbitmq_build_info.
//   - rabbitmq_build_info and rabbitmq_identity_info come after the queue
//     families (emit_identity_info runs last in collect_mf('detailed', _));
//     their labels are label pairs, escaped in every version. 4.1 and later
//     add rabbitmq_detailed_queue_info (vhost, queue, queue_type,
//     membership) before them; the telemetry summaries of the same registry
//     may come before or after (registry order).
//   - RabbitMQ strips CR and LF from queue names declared over AMQP 0-9-1
//     (rabbit_channel:strip_cr_lf, also used by the management API and the
//     stream protocol), and rejects invalid UTF-8 there. Definitions import,
//     native MQTT (3.12) and AMQP 1.0 (3.13+) do not go through it, and vhost
//     names are free, so raw line feeds must still be expected.
//
// # Reading without ambiguity
//
// In escaped answers every line reads one way. In raw answers a name can
// contain `",queue="`, `"} ` and line feeds, so Parse accepts an answer only
// if it reads exactly one way, by these rules:
//
//  1. Structure, for every line of every family: a block opens with a
//     "# TYPE" line immediately followed by its "# HELP"; each family has
//     one block; every other line is a sample of its block's family (starts
//     with NAME followed by "{" or " ", or NAME_sum/_count/_bucket in summary
//     and histogram blocks); one empty line ends the answer and nothing
//     follows it. Comments, empty lines and foreign samples are refused.
//  2. Each of our families must be present, and in raw (or unknown) mode
//     they must list the same label texts (same number of samples, same sum
//     of seeded 64-bit hashes of the text between the braces). With chosen
//     fields (queue/fields.go) this holds for the families that list every
//     queue, across groups; sparse ones (queue_metrics: a stream has no
//     head message timestamp) are exempt, which the argument below allows
//     because that group renders every queue in several blocks. A lone
//     queue_consumer_count family, one block per queue, is never asked for
//     alone: the coarse group comes with it, its messages family a witness
//     read only for this rule.
//  3. A sample of ours is NAME{vhost="X"} VALUE split at the last space:
//     VALUE is a plain non-negative integer (no space in it), so a name
//     containing `"} ` is harmless. X must contain `",queue="` exactly once
//     in raw mode (else the vhost/name split is ambiguous and refused); in
//     escaped mode it must unescape cleanly.
//  4. A label set listed twice in one family is refused, in every mode and
//     whether or not the duplicate is in every family: the parser compares
//     the label texts of each block itself (rows.go) rather than relying on
//     the sink, which matches later families' rows by position and so sees
//     nothing wrong when every family repeats the row. A real plugin never
//     lists a text twice (one row per queue, and one text is one vhost and
//     name), so this holds before any filter. Names that differ only in
//     invalid UTF-8 are different texts: accepted, and the sink makes them
//     one series.
//
// Why (1) and (2) catch every line a raw name can forge: let a row's labels
// contain a line feed, and let T be the text from the first line feed in
// them up to the next line feed (or to the end of the row's line). T is the
// same in each family's block, because the four blocks render the same rows
// and differ only in the family name before the labels and the value after
// them. T is a whole line in each block. If T is a sample line, its family
// name lies inside T (a name ends at "{" or " "; the row's own `"}` cannot
// extend it), so it can belong to one block's family at most, and the other
// blocks refuse it. If T is "# TYPE G ...", it opens a block of G in each
// of the blocks, so G has several blocks: refused. "# HELP" must follow a
// "# TYPE" line, but the line before T starts with the block's family name:
// refused. Any other comment, an empty line (which would end the answer
// early) and trailing text are refused. So every row that contains a line
// feed is refused, provided it is rendered in at least two blocks; the
// plugin renders every row in all four (integer values are never dropped),
// and rule (2) refuses answers where our families list different rows.
// Nor can a name swallow whole blocks: the plugin writes every family, and
// each of ours has exactly one "# TYPE" line in the answer (rule 1), so no
// reading can hide one inside a name. Without line feeds each line is one
// row, and rule (3) reads it one way. FuzzParse checks all this against a
// brute-force enumeration of the raw renderings of small answers.
//
// Filters come before budgets. Rules 1 and 2 hold for every line whatever
// the filters, as the argument above needs; but a label that reads several
// ways (rule 3) or waits for the mode (below) is judged only if the
// module's filters keep one of its readings. Otherwise it is dropped
// unread, costs no held bytes and refuses nothing, so a tenant who can
// declare queues cannot make scrapes filtered to other vhosts fall back.
//
// The mode comes from rabbitmq_build_info, which arrives after the queue
// families. Labels without backslash and without a double quote other than
// the separator's read the same in both modes and go straight to the sink.
// A label with a lone backslash or a bare double quote only reads raw; it
// settles the mode (and is refused if build_info then names an escaping
// version). Labels that read differently in the two modes wait, bounded by
// Limits.MaxHeldBytes, until build_info tells the mode; without a usable
// build_info they make the answer ambiguous.
//
// # What the caller does
//
//   - One fresh QueueSet per member; on any error discard it. ErrAmbiguous
//     and ErrMalformed mean: use the management listing for this scrape (log
//     the error: it names the line and shows the label escaped, on one line).
//     An ambiguous raw answer stays ambiguous until the hostile queue is
//     gone, so the fallback may be needed for many scrapes.
//   - Merge the members' sets, then Finish (QueueSet keeps the first of
//     equal queues; a queue in two members' answers is a duplicate there).
//   - keep is called for every sample (three times per queue); it sees the
//     names as read (raw bytes, before QueueSet normalises invalid UTF-8).
//     The plugin can filter by vhost itself (?vhost=V, repeatable) and 4.3
//     by queue regex (?queue=RE), which shortens the answer.
//   - Streams are in queue_coarse_metrics (ready = committed offset) while
//     the management listing with disable_stats gives them no counts, so the
//     two sources differ for streams.
package plugin
