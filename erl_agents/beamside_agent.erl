%%% ===========================================================================
%%% beamside_agent -- the entry point the beamside sidecar calls on a node.
%%% ===========================================================================
%%%
%%% beamside loads its `beamside_*' modules into a running node with
%%% `code:atomic_load/1' over the distribution connection (the node needs no
%%% compiler, nothing is added to the user's release) and calls the functions
%%% below through `rex' (one `rpc:call'-like request each).  Every call is
%%% recon-style: it takes explicit limits, tolerates processes and ports that
%%% die while it looks at them, never crashes its caller (a failure is
%%% `{error, Reason}', for the whole call or for one section of the reply) and
%%% never turns a VM-wide setting on or off behind the operator's back.
%%%
%%% Modules (all prefixed `beamside_', all unloaded again by `detach'):
%%%   beamside_agent           this API; info, collect/live orchestration.
%%%   beamside_vm              the kernel/erts core sections of a snapshot.
%%%   beamside_procs           the bounded process walk (queues, memory).
%%%   beamside_alarms          the `alarms' section (node-side alarm data).
%%%   beamside_checks          the opt-in, costlier sections (startup_files,
%%%                            modules, env).
%%%   beamside_sysmon          the one long-lived process (see attach/2).
%%%   beamside_alarm_handler   its SASL alarm_handler event handler.
%%%   beamside_events          the log and notification forwarder (a process
%%%                            linked to beamside_sysmon), and the
%%%                            `code_events' section.
%%%   beamside_logger          its OTP logger handler (id `beamside').
%%%   beamside_lager           its lager backend, when lager runs.
%%%   beamside_plugin          the plugin behaviour and the built-in list.
%%%   beamside_plugin_os_mon   cpu_sup / memsup / disksup, when os_mon runs.
%%%   beamside_plugin_mnesia   locks, transactions, tables, when mnesia runs.
%%%   beamside_plugin_poolboy  poolboy pools (size, overflow, checked out,
%%%                            waiting), when poolboy runs or is loaded.
%%%   beamside_plugin_folsom   every folsom metric, when folsom runs.
%%%   beamside_plugin_ranch    ranch (and cowboy) listeners, when ranch runs.
%%%   beamside_plugin_rabbitmq RabbitMQ's resource alarms, totals, cluster,
%%%                            when rabbit runs.
%%%   beamside_plugin_ejabberd ejabberd's sessions, users, s2s, queues, when
%%%                            ejabberd runs.
%%%   beamside_plugin_yaws     Yaws' servers, connections, requests, when
%%%                            yaws runs.
%%%   beamside_plugin_lager    lager's sync mode and event queue, when lager
%%%                            runs.
%%%   beamside_ops             the control plane's operator tools: what they
%%%                            share; the tools themselves are in
%%%                            beamside_ops_node, beamside_ops_procs,
%%%                            beamside_ops_safety, beamside_ops_ets,
%%%                            beamside_ops_code, beamside_ops_env and
%%%                            beamside_ops_eval (see beamside_ops's header).
%%%   beamside_redact          the redaction rule: secrets in env values,
%%%                            states, events never leave the node in clear.
%%%   beamside_watchdog        removes all of the above when the sidecars are
%%%                            gone without detaching.
%%%
%%% ---------------------------------------------------------------------------
%%% version() -> pos_integer()
%%%   The agent protocol version (?VERSION below).  Bump rule: bump it when a
%%%   function's arguments, options or return shape change, or a snapshot key
%%%   is added, renamed or removed, i.e. whenever the sidecar must know which
%%%   agent it talks to.  The sidecar also compares the md5 of every module
%%%   (info/0 `modules'), so a rebuild without a bump is still replaced.
%%%   Cost: nothing.
%%%   History:
%%%     1  first version.
%%%     2  collect/1: new sections `alarms', `time', `dist_nodes'; opt-in
%%%        sections `startup_files', `modules', `env' (Opts startup_files,
%%%        modules_md5, env_keys); `processes' always reports max_memory and
%%%        top_memory (memory slices, Opts memory_chunk) and `memory_max' is
%%%        renamed `max_memory'; attach/2 also forwards SASL alarms and
%%%        mnesia system events (new module beamside_alarm_handler).
%%%     3  attach/2: event options (logs, shell_events, sysmon_events,
%%%        sysmon_events_rate, events) start beamside_events (logger handler
%%%        beamside_logger, lager backend beamside_lager), which pushes
%%%        {beamside_events, Node, Seq, Events, Dropped} batches; a second
%%%        attach updates a sidecar's event options; collect/1: opt-in
%%%        sections `code_events' and `config_events' (Opts code_events,
%%%        config_events); new module beamside_ops (the control plane's
%%%        operator tools).
%%%     4  no residue and no noise when the sidecar goes without a goodbye:
%%%        new module beamside_watchdog (a process running no beamside code
%%%        that removes handlers, processes and the modules themselves once
%%%        no sidecar of the watched set is connected); the SASL alarm
%%%        handler and the lager backend are plain (not supervised)
%%%        handlers; every stop tolerates the process stopping by itself
%%%        meanwhile; info/0 has `sidecars' (the nodes beamside_sysmon
%%%        watches), which the sidecar uses to replace an orphaned newer
%%%        agent.  alarms.old_code has `ages_ms' (how long each module has
%%%        had its old code); a plugins.os_mon part whose server does not
%%%        run is `not_running' (was an error); family_source `application'
%%%        (the node's main application when it runs no release).
%%%        alarms.memory_view has `source' (cgroup_v1 | cgroup_v2 |
%%%        meminfo), `limit_bytes', `used_bytes' and a v1 or v2 `cgroup'
%%%        (#{version, path, limit_bytes, usage_bytes, inactive_file_bytes},
%%%        was v2 only: max_bytes, current_bytes); new part alarms.disk_view
%%%        (df of the mnesia or working directory; Opts
%%%        disk_view_interval_ms).
%%%     5  the control plane's operator tools are split by concern:
%%%        beamside_ops_node, beamside_ops_procs (with beamside_ops_safety),
%%%        beamside_ops_ets, beamside_ops_code, beamside_ops_env and
%%%        beamside_ops_eval; beamside_ops keeps only what they share (the
%%%        sidecar calls each service's own module: beamside_ops:top/1 and
%%%        the like are gone).
%%%     6  secrets never leave in clear: new module beamside_redact, used by
%%%        beamside_ops_env (get_env redacts unless reveal => true, entries
%%%        have `redacted'; set_env's previous/value and env_dump's text are
%%%        always redacted), beamside_ops_procs:process/2 (state, messages,
%%%        dictionary; reveal => true), the `config_events' section (old/new
%%%        redacted at any depth, a secret-named key's value is the marker
%%%        text <<"<redacted sha256:xxxxxx>">>, was the atom `redacted'), the
%%%        `env' section's text and the printed SASL alarms; beamside_sysmon's
%%%        table is protected (other processes' writes go through it) and
%%%        its config views hold redacted texts only.
%%%     7  a crash loses no event: batches are {beamside_events, Node, Seq,
%%%        Events, Dropped, Session} and kept until the sidecar acknowledges
%%%        them ({beamside_events_ack, Sidecar, Session, Seq}); a sidecar
%%%        gone without detaching keeps its handler and retention for a grace
%%%        period (events grace_s, 120) and gets them again first when it
%%%        attaches again; drop reason retain_overflow (events retain_events,
%%%        retain_bytes); busy_dist / noconnect no longer drop.
%%%     8  the `dist' section is an aggregate by default (peer_counts,
%%%        sockets, processes, per_peer => false; see beamside_vm): the
%%%        per-peer list `peers' only with Opts dist_per_peer => true, then
%%%        capped by max_peers (default 100, was 1000) with `omitted'.
%%%     9  plugins.poolboy (beamside_plugin_poolboy; options max_pools,
%%%        max_registered) and plugins.folsom (beamside_plugin_folsom;
%%%        options max_metrics, max_histograms) and plugins.ranch
%%%        (beamside_plugin_ranch; option max_listeners).
%%%    10  plugins.rabbitmq (beamside_plugin_rabbitmq; options max_vhosts,
%%%        max_queues): RabbitMQ's resource alarms, totals, per-vhost
%%%        message counts, global counters, cluster and partitions; and
%%%        plugins.ejabberd (beamside_plugin_ejabberd; options max_vhosts,
%%%        max_rows): sessions, users, s2s, central queues; and plugins.yaws
%%%        (beamside_plugin_yaws; option max_servers): servers, connections,
%%%        requests; plugins.lager (beamside_plugin_lager): sync mode, event
%%%        queue; versions.releases (release_handler:which_releases/0).
%%%    11  collect/1: the `allocators' section has mseg_alloc's segment
%%%        cache under the key mseg_alloc (cache_calls, cache_hits,
%%%        cached_segments, instances; see beamside_vm).
%%%    12  collect/1: the sections only the sidecar's exporter reads
%%%        (?PACKED: allocators, allocated_areas, run_queues, statistics,
%%%        scheduler_utilization, msacc, ports, ets, kernel, dist) come
%%%        packed, when they are maps, as one term_to_binary'd map under
%%%        the key `packed' (the sidecar keeps those bytes, a quarter of
%%%        the terms' size in its memory, and decodes them when it renders
%%%        /metrics); one of them that failed stays `{error, Reason}' at
%%%        the top level.
%%%
%%% info() -> map()
%%%   What the node runs: `agent_version', `node', `otp_release',
%%%   `erts_version', `system_architecture', `emulator_flavor', `wordsize',
%%%   `os_pid', `uptime_ms', `applications' (#{App => Vsn}, running ones),
%%%   `plugins' (#{os_mon => boolean(), mnesia => boolean()}: whether the
%%%   plugin applies, i.e. its application runs), `modules' (#{Mod => Md5Hex}
%%%   of every loaded beamside_* module), `attached' (boolean), `sidecars'
%%%   (the sidecar nodes beamside_sysmon watches, [] when not attached;
%%%   since version 4) and the family
%%%   hint:
%%%     `family_hint' (binary) and `family_source' (atom), in this order:
%%%       boot_script      init:script_id() names a real release (anything but
%%%                        the default "Erlang/OTP" / "OTP  APN 181 01" boot
%%%                        scripts): its name;
%%%       release_handler  sasl runs and release_handler knows a permanent (else
%%%                        current) release that is not the default one: its
%%%                        name (bounded by a 1 s call);
%%%       application      no release: the node's main application
%%%                        (main_application/0): a known one names its
%%%                        product (rabbit -> <<"rabbitmq">>, ejabberd,
%%%                        mongooseim, yaws, ...), else the root of the running
%%%                        applications that are not OTP's or Elixir's own
%%%                        (an Elixir or Erlang application's own name);
%%%       default          <<"erlang">> (only OTP's and Elixir's applications
%%%                        run).
%%%     `release_version' is the release's (or that application's) version
%%%     when there is one.
%%%   Any part that fails is `{error, Reason}' in place of its value.
%%%   Cost: a few BIFs, one application_controller call (1 s limit), one
%%%   release_handler call when sasl runs (1 s limit); without a release one
%%%   more application_controller call (application:info/0, 1 s limit) and
%%%   an application:get_key/2 (ETS) per key of each running application.
%%%
%%% attach(SidecarNode, Opts) -> {ok, pid()} | {error, term()}
%%%   Starts (idempotent) `beamside_sysmon', the only long-lived beamside
%%%   process, tied to the sidecar: it monitors SidecarNode (which must be
%%%   connected already: no connection attempt is made) and, when the last
%%%   sidecar that attached is gone (nodedown) or on detach/0, it removes
%%%   everything it installed and exits (after a nodedown of a sidecar that
%%%   wanted events: once the forwarder's grace period is over, see
%%%   beamside_events).  A second sidecar attaching adds
%%%   itself to the watched set.  What it holds:
%%%     * the system monitor, ONLY if erlang:system_monitor() is `undefined'
%%%       (it is one VM-wide slot); otherwise the snapshot says
%%%       `taken_by_other' and the user's monitor is left alone.  It counts
%%%       long_gc, long_schedule, large_heap, busy_port and busy_dist_port
%%%       events (counters only, in its own ETS table).  Opts:
%%%       system_monitor (true), long_gc (ms, 100), long_schedule (ms, 100),
%%%       large_heap (words, 32 Mi words), busy_port (true), busy_dist_port
%%%       (true).  If the process dies, the VM clears the monitor itself.
%%%     * scheduler_wall_time, only with Opts `scheduler_wall_time => true':
%%%       turned on from this process, so the VM turns it off again when the
%%%       process exits (the flag is reference counted per process).
%%%     * microstate accounting, only with Opts `msacc => true' and only if it
%%%       was off; turned off again on exit (not if the process is killed).
%%%     * cpu_sup:util/1 state (cpu_sup measures per calling process).
%%%     * when sasl runs: beamside_alarm_handler, a (plain) handler in
%%%       SASL's alarm_handler event manager, keeping the alarms set (see
%%%       beamside_alarm_handler); when mnesia runs: a mnesia system event
%%%       subscription (inconsistent_database and mnesia_overload counted).
%%%       Both are also installed by a later collect if sasl / mnesia start
%%%       after attach; if the process dies, the watchdog deletes the
%%%       handler and mnesia drops the subscription.
%%%     * the watchdog beamside_watchdog (one process running no beamside
%%%       code): once the process is gone and none of its sidecars is
%%%       connected (SIGKILL of the sidecar, network cut,
%%%       net_kernel:disconnect), it removes handlers, processes and the
%%%       beamside modules themselves (deleted and soft-purged; never
%%%       killing a user process), logging nothing; see beamside_watchdog.
%%%     * with event options (any of the keys below): the forwarder
%%%       beamside_events (see there for the batch message, the event maps,
%%%       batching, rate limits and the shell detection), which installs
%%%       the logger handler `beamside' (beamside_logger) and, when lager
%%%       runs, the lager backend beamside_lager, and sends this sidecar
%%%       {beamside_events, Node, Seq, [Event], #{Reason => Dropped}, Session}
%%%       at its registered name beamside_events (send with nosuspend and
%%%       noconnect: never blocking), kept until the sidecar acknowledges
%%%       them, bounded (see beamside_events: acknowledgement, retention,
%%%       the grace period after a sidecar crash).
%%%       Per sidecar (a second attach of the same sidecar replaces them;
%%%       one without any of these keys takes it out of the stream):
%%%         logs => #{level => Level | none (warning), max_bytes (8192),
%%%                   depth (30), single_line (false), lager (true)}
%%%         shell_events => boolean()        (true) shell expressions
%%%         sysmon_events => boolean()       (false) each system monitor event
%%%         sysmon_events_rate => integer()  (10 per s, node-wide)
%%%         events => #{max_rate (2000 per s), batch_size (500), batch_ms
%%%                     (200), batch_bytes (262144), max_queue (5000),
%%%                     shell_poll_ms (1000), shell_scan_s (0),
%%%                     retain_events (50000), retain_bytes (33554432),
%%%                     grace_s (120)}  (node-wide)
%%%       The handler's level is the most verbose level any sidecar asked
%%%       for (each sidecar gets its own level and up); logger's primary
%%%       level is left alone (events below it reach no handler).  When the
%%%       last sidecar that wants events goes (detach, an attach without
%%%       event options, or grace_s after its nodedown), the handler and the
%%%       backend are removed and the forwarder exits; if the forwarder is killed, the
%%%       handler and the backend remove themselves at their next event
%%%       (and the watchdog removes them).
%%%   Cost: one process, one small ETS table, a message per system monitor
%%%   event (thresholds above keep them rare), an ETS write per SASL alarm
%%%   set or cleared, a message per mnesia system event.  With events: one
%%%   more process; per log event at or above the level, about 11 us in the
%%%   logging process (formatting, bounded) and 9 us of node CPU in all,
%%%   i.e. about half of logger_std_h writing the same event to a file
%%%   (bench/bench_log_handler.py); the shell poll every second (a few
%%%   process_info calls, a dictionary read when a shell ran a command); a
%%%   walk of the processes (about 0.3 us each) at attach and after a node
%%%   connects, for remote shells.
%%%
%%% detach() -> ok
%%%   Stops beamside_sysmon (which releases the system monitor and the flags
%%%   it turned on, deletes its alarm_handler handler and unsubscribes from
%%%   mnesia).  The sidecar then deletes and purges every beamside_*
%%%   module and cancels the watchdog (a gen_server-style `cancel' call to
%%%   the registered beamside_watchdog; it also ends by itself once the
%%%   modules are gone): after that no beamside module, process, registered
%%%   name, ETS table, event handler, subscription, system monitor or flag
%%%   is left.
%%%
%%% collect(Opts) -> {ok, Snapshot :: map()} | {error, term()}
%%%   Everything the sidecar exports, in one reply, mostly numbers.  Each
%%%   section is computed on its own: a section that fails is
%%%   `{error, Reason}' in the snapshot and the others are still there.
%%%   Top-level keys: agent_version, node, system_time_us, uptime_ms,
%%%   duration_us, timings (#{Section => microseconds}), packed (the
%%%   sections of ?PACKED that are maps, as term_to_binary(#{Section =>
%%%   map()}): see version 12) and the sections
%%%     versions               otp_release, erts_version, system_architecture,
%%%                            emulator_flavor, applications #{App => Vsn}
%%%     memory                 erlang:memory() + persistent_term bytes
%%%     allocators             #{Alloc => #{mbcs_blocks_size, mbcs_carriers_size,
%%%                            mbcs_pool_blocks_size, mbcs_pool_carriers_size,
%%%                            sbcs_blocks_size, sbcs_carriers_size, instances}}
%%%                            per alloc_util allocator, and mseg_alloc =>
%%%                            #{cache_calls, cache_hits, cached_segments,
%%%                            instances}: its segment cache (since v11)
%%%     allocated_areas        erlang:system_info(allocated_areas) as a map
%%%     limits                 counts and limits (processes, ports, atoms, ets,
%%%                            modules, old code, registered names, dist links,
%%%                            fds, sockets, persistent terms)
%%%     system                 schedulers, processors, flags, gc defaults, times
%%%     run_queues             normal/dirty run queues and active tasks
%%%     statistics             context switches, reductions, gc, io, runtime
%%%     scheduler_utilization  only numbers when scheduler_wall_time is on
%%%     msacc                  per thread type, when microstate accounting is on
%%%     processes              the bounded walk (beamside_procs): message
%%%                            queues (top_message_queue, mq_*) and, a slice
%%%                            per call, memory (max_memory, top_memory)
%%%     ports                  ports by driver (count, memory, queue, io bytes)
%%%     ets                    table count, top_n table names by memory
%%%     kernel                 global names/locks, logger handlers and level
%%%     dist                   #{per_peer, up, pending, buf_busy_limit,
%%%                            peer_counts => #{up | pending => #{visible |
%%%                            hidden => N}}, sockets => #{count, recv_bytes,
%%%                            recv_packets, send_bytes, send_packets,
%%%                            output_queue_bytes, output_queue_max_bytes,
%%%                            busy}, processes => #{count, memory_bytes,
%%%                            memory_max_bytes, message_queue_len,
%%%                            message_queue_len_max, reductions}}: sums
%%%                            over every connection (see beamside_vm);
%%%                            with dist_per_peer also peers => [#{node,
%%%                            type, state, controller}] (at most
%%%                            max_peers), omitted, truncated
%%%     sysmon                 system monitor state and event counters, the
%%%                            forwarders' state: alarm_handler (installed |
%%%                            pending | not_running | {error, R}) and
%%%                            mnesia_subscribed (boolean)
%%%     plugins                #{Plugin => map() | {error, Reason}}
%%%     alarms                 node-side alarm data (beamside_alarms), each
%%%                            part `{error, Reason}' on its own:
%%%       sasl            not_running | #{count, truncated, alarms =>
%%%                       [#{id, description, name, set_at_ms}]}: the
%%%                       alarms set in SASL's alarm_handler (os_mon's
%%%                       memsup/disksup alarms included), at most 100,
%%%                       id/description printed (~0tP, depth 20, <= 512
%%%                       bytes), name = the id's atom (or first atom);
%%%                       from beamside_sysmon's table when attached (no
%%%                       call), else alarm_handler:get_alarms() (1 s).
%%%       mnesia          not_running | not_attached | #{subscribed,
%%%                       inconsistent_database (count),
%%%                       last_inconsistent_database (#{context, node,
%%%                       at_ms} | none), overload (count), last_overload
%%%                       (#{details, at_ms} | none)}: counted since attach.
%%%       old_code        #{count, modules (<= 100 atoms, sorted), ages_ms}:
%%%                       modules with old code (the same check_old_code walk
%%%                       as limits.modules_old_code: done once per collect)
%%%                       and since when (#{Mod => Ms} | not_attached; see
%%%                       beamside_alarms).
%%%       shell_history   disabled | #{path, bytes, files, truncated,
%%%                       limit_bytes (kernel shell_history_file_bytes,
%%%                       when set)}: the shell history directory (kernel
%%%                       shell_history_path, else filename:basedir(
%%%                       user_cache, "erlang-history")), at most 1000
%%%                       entries listed.
%%%       memory_view     os_mon (memsup runs: see plugins.os_mon) |
%%%                       unavailable (not Linux) | #{source (cgroup_v1 |
%%%                       cgroup_v2 | meminfo), limit_bytes, used_bytes,
%%%                       total_bytes, available_bytes, free_bytes,
%%%                       swap_total_bytes, swap_free_bytes, cgroup}: the
%%%                       node's cgroup when its limit is below MemTotal,
%%%                       else /proc/meminfo (see beamside_alarms).
%%%       disk_view       os_mon (disksup runs) | unavailable | #{source =>
%%%                       df, path, dir_source (mnesia | cwd), mount,
%%%                       total_bytes, used_bytes, available_bytes,
%%%                       capacity (percent), age_ms}: df of the node's data
%%%                       directory, at most every disk_view_interval_ms
%%%                       (60000) while attached, 1 s limit.
%%%                            Cost: ETS reads, one check_old_code BIF per
%%%                            module (shared with limits), a list_dir and
%%%                            a stat per history file when enabled, two
%%%                            or three small /proc and /sys reads: about
%%%                            100-300 us.
%%%     time                   #{system_time_us (os:system_time),
%%%                            erlang_system_time_us, utc_offset_s (local
%%%                            time minus UTC, seconds)}.  Cost: a few us.
%%%     dist_nodes             [node()]: visible connected nodes (nodes()),
%%%                            sorted, at most 1000 (limits.dist_visible
%%%                            has the count).  Cost: one BIF.
%%%   Opt-in sections, computed only when their option is given (absent
%%%   otherwise, whatever `sections' says), meant to be asked for every N
%%%   ticks (beamside_checks):
%%%     startup_files          with startup_files => true: #{checked,
%%%                            truncated, errors => [#{file, kind (config |
%%%                            boot | rel | releases | app), reason}]}: the
%%%                            files that would stop the node from
%%%                            restarting parsed: sys.config (-config),
%%%                            the boot file (-boot), releases/*/*.rel and
%%%                            releases/RELEASES under code:root_dir(), the
%%%                            .app of every running application.  At most
%%%                            200 files, 10 MB each (bigger: too_large),
%%%                            startup_files_timeout_ms (2000) in all.
%%%                            Cost: reading and parsing those files, in
%%%                            a separate process: typically 5-50 ms.
%%%     modules                with modules_md5 => true: #{Mod => Md5Hex}
%%%                            of every loaded module but beamside's own
%%%                            (at most 20000).  Cost: about 2 us a module.
%%%     code_events            with code_events => true, meant for every tick
%%%                            (needs attach): the modules loaded, reloaded,
%%%                            purged and deleted since the previous such
%%%                            collect by the same sidecar (see
%%%                            beamside_events:code_events/2): #{baseline,
%%%                            modules, truncated, events => [#{type =>
%%%                            module_loaded | module_reloaded |
%%%                            module_purged | module_deleted, module,
%%%                            md5 (hex, current code)}]}; not_attached
%%%                            when not attached.  The first call is a
%%%                            baseline (no events).  Cost: about 0.35 us a
%%%                            loaded module (1 ms at 3,000 modules) plus
%%%                            the old code walk shared with limits.
%%%     config_events          with config_events => true, meant for every
%%%                            tick (needs attach): application env values
%%%                            set, changed or unset since the previous such
%%%                            collect by the same sidecar (see
%%%                            beamside_events:config_events/2): #{baseline,
%%%                            keys, truncated, events => [#{type =>
%%%                            config_changed, app, key, old, new (printed,
%%%                            <= 1000 characters, `redacted' for keys that
%%%                            look like secrets, undefined when unset)}]};
%%%                            not_attached when not attached.  Cost: a hash
%%%                            of every env value (about 0.5 ms for 1,000
%%%                            keys); printing only what changed.
%%%     env                    with env_keys => [{App, Key}] (<= 100; a
%%%                            2-element list works too): #{{App, Key} =>
%%%                            undefined | #{hash => erlang:phash2(Value),
%%%                            text => printed value (<= 512 bytes)}};
%%%                            env_text => false leaves text out (values
%%%                            may be secrets).  Cost: one ETS read each.
%%%   Opts (all optional):
%%%     sections          all | [Section]          (all)
%%%     versions          boolean()                (true) applications list
%%%     top_n             0..100                   (10) top offenders listed
%%%     mq_threshold      integer()                (1000) messages
%%%     max_processes     integer()                (200000) walk cap
%%%     walk_chunk        integer()                (50000) processes per call
%%%                                                when attached (0: all)
%%%     walk_max_age_ms   integer()                (600000) chunk results kept
%%%     walk_timeout_ms   integer()                (2000) walk time cap
%%%     memory_chunk      integer()                (2500) processes per call
%%%                                                asked for memory too (0:
%%%                                                every one walked; else
%%%                                                at least 1000)
%%%     walk_memory       boolean()                (false) memory of every
%%%                                                process, whole table in
%%%                                                one call (about 7x the
%%%                                                walk), memory_sum too
%%%     memory_threshold  integer()                (104857600) bytes
%%%     max_ports         integer()                (10000)
%%%     dist_per_peer     boolean()                (false) per-peer `dist'
%%%     max_peers         integer()                (100) peers detailed
%%%     max_ets_tables    integer()                (10000)
%%%     fds               boolean()                (true) count /proc/self/fd
%%%     plugins           all | [Name]             (all) plugins to run
%%%     extra_plugins     [module()]               ([]) user plugins (loaded)
%%%     plugin_timeout_ms integer()                (2000) per plugin
%%%     max_tables        integer()                (1000) mnesia tables
%%%     max_disks         integer()                (64) disksup mounts
%%%     max_pools         integer()                (100) poolboy pools
%%%     max_registered    integer()                (5000) names looked at for pools
%%%     max_metrics       integer()                (500) folsom metrics
%%%     max_histograms    integer()                (100) folsom statistics computed
%%%     max_listeners     integer()                (50) ranch listeners
%%%     startup_files     boolean()                (absent) see above
%%%     startup_files_timeout_ms integer()         (2000)
%%%     modules_md5       boolean()                (absent) see above
%%%     env_keys          [{App, Key}]             (absent) see above
%%%     code_events       boolean()                (absent) see above
%%%     config_events     boolean()                (absent) see above
%%%     env_text          boolean()                (true)
%%%     disk_view_interval_ms integer()            (60000) df at most this
%%%                                                often (alarms.disk_view)
%%%   Cost, measured on a 2-core VM, OTP 25: about 1.5 ms plus the process
%%%   walk (4 ms to list 100,000 processes, then 0.16 us per process looked
%%%   at: one chunk of at most walk_chunk per call when attached, plus about
%%%   1.5 us per process of the memory slice, at most memory_chunk, see
%%%   beamside_procs) and the plugins (cpu_sup/memsup/disksup/mnesia calls,
%%%   well under 1 ms each).  At 100,000 processes a call costs the node
%%%   about 19 ms of CPU (13 ms in version 1, without the memory slice):
%%%   about 0.12 % of one scheduler at a 15 s interval (budget 0.2 %;
%%%   bench/bench_agent_overhead.py).  The opt-in sections come on top,
%%%   on the ticks that ask for them.
%%%   Side effect worth knowing: statistics(reductions | exact_reductions |
%%%   runtime | wall_clock) keep one VM-wide "since last call" value, which
%%%   any caller (ours included) moves; we only use the totals.
%%%
%%% live(Keys, Opts) -> {ok, map()}
%%%   A cheap subset for the 1 s live stream.  Keys: any collect section name
%%%   or process_count, port_count, reductions, context_switches, io, gc,
%%%   run_queue, memory_total.  An unknown key maps to {error, unknown_key}.
%%%   At most 32 keys.  The `processes' key walks processes: not cheap.
%%% ===========================================================================
-module(beamside_agent).

-export([version/0, info/0, attach/2, detach/0, collect/1, live/2]).
%% Helpers shared by the other beamside modules.
-export([safe/1, run_bounded/3, reason/1, opt/3, to_bin/1, mfa_bin/1, pid_bin/1,
         running_apps/1, int_opt/4, truncate/2, hex/1]).

-define(VERSION, 12).
%% sections only the sidecar's exporter reads: sent packed (version 12)
-define(PACKED, [allocators, allocated_areas, run_queues, statistics,
                 scheduler_utilization, msacc, ports, ets, kernel, dist]).
-define(RELEASES_MS, 500).
-define(MAX_RELEASES, 20).
-define(PREFIX, "beamside_").
-define(APPS_TIMEOUT, 1000).
%% Applications that name their product's family (see main_application/0).
-define(KNOWN_APPS, [{rabbit, <<"rabbitmq">>}, {rabbitmq_prelaunch, <<"rabbitmq">>},
                     {ejabberd, <<"ejabberd">>}, {mongooseim, <<"mongooseim">>},
                     {yaws, <<"yaws">>}, {couch, <<"couchdb">>}, {emqx, <<"emqx">>},
                     {vmq_server, <<"vernemq">>}, {riak_kv, <<"riak">>}]).
-define(MAX_LIVE_KEYS, 32).

-define(SECTIONS, [versions, memory, allocators, allocated_areas, limits, system,
                   run_queues, statistics, scheduler_utilization, msacc, processes,
                   ports, ets, kernel, dist, sysmon, plugins, alarms, time, dist_nodes]).
%% Computed only when their option is in Opts: {Section, Option}.
-define(OPT_IN, [{startup_files, startup_files}, {modules, modules_md5}, {env, env_keys},
                 {code_events, code_events}, {config_events, config_events}]).

-type section() :: atom().
-type opts() :: #{atom() => term()}.
-export_type([opts/0]).

%%% ---------------------------------------------------------------------------
%%% API

-spec version() -> pos_integer().
version() -> ?VERSION.

-spec info() -> map().
info() ->
    Apps = safe(fun() -> running_apps(?APPS_TIMEOUT) end),
    AppNames = case Apps of
                   L when is_list(L) -> [A || {A, _} <- L];
                   _ -> []
               end,
    Family = safe(fun family_hint/0),
    Base = #{agent_version => ?VERSION,
             node => node(),
             otp_release => safe(fun() -> to_bin(erlang:system_info(otp_release)) end),
             erts_version => safe(fun() -> to_bin(erlang:system_info(version)) end),
             system_architecture =>
                 safe(fun() -> to_bin(erlang:system_info(system_architecture)) end),
             emulator_flavor => safe(fun emu_flavor/0),
             wordsize => erlang:system_info(wordsize),
             os_pid => safe(fun() -> list_to_integer(os:getpid()) end),
             uptime_ms => uptime_ms(),
             applications => case Apps of
                                 L2 when is_list(L2) -> maps:from_list(L2);
                                 Err -> Err
                             end,
             plugins => maps:from_list([{safe(fun() -> M:name() end),
                                         safe(fun() -> M:applies(AppNames) end)}
                                        || M <- beamside_plugin:builtin()]),
             modules => safe(fun agent_modules/0),
             attached => whereis(beamside_sysmon) =/= undefined,
             sidecars => beamside_sysmon:sidecars()},
    case Family of
        {Source, Name, Vsn} ->
            Base#{family_hint => Name, family_source => Source, release_version => Vsn};
        {error, no_release} ->
            Base#{family_hint => <<"erlang">>, family_source => default};
        Error ->
            Base#{family_hint => <<"erlang">>, family_source => default, family_error => Error}
    end.

-spec attach(SidecarNode :: node(), Opts :: opts()) -> {ok, pid()} | {error, term()}.
attach(SidecarNode, Opts) when is_atom(SidecarNode), is_map(Opts) ->
    try beamside_sysmon:start(SidecarNode, Opts)
    catch C:R -> {error, {C, reason(R)}}
    end;
attach(_, _) ->
    {error, badarg}.

-spec detach() -> ok.
detach() ->
    _ = safe(fun beamside_sysmon:stop/0),
    ok.

-spec collect(Opts :: opts()) -> {ok, map()} | {error, term()}.
collect(Opts) when is_map(Opts) ->
    try
        {ok, collect_(Opts)}
    catch
        C:R -> {error, {C, reason(R)}}
    end;
collect(_) ->
    {error, badarg}.

-spec live(Keys :: [atom()], Opts :: opts()) -> {ok, map()} | {error, term()}.
live(Keys, Opts) when is_list(Keys), is_map(Opts) ->
    try
        Ks = lists:sublist(lists:usort([K || K <- Keys, is_atom(K)]), ?MAX_LIVE_KEYS),
        {ok, maps:from_list([{K, live_value(K, Opts)} || K <- Ks])}
    catch
        C:R -> {error, {C, reason(R)}}
    end;
live(_, _) ->
    {error, badarg}.

%%% ---------------------------------------------------------------------------
%%% collect

-spec collect_(opts()) -> map().
collect_(Opts) ->
    T0 = erlang:monotonic_time(microsecond),
    SysTime = os:system_time(microsecond),
    Wanted0 = case maps:get(sections, Opts, all) of
                  all -> ?SECTIONS;
                  L when is_list(L) -> [S || S <- ?SECTIONS, lists:member(S, L)];
                  _ -> ?SECTIONS
              end,
    Wanted = Wanted0 ++ [S || {S, Opt} <- ?OPT_IN, opt_in(Opt, Opts)],
    Need = fun(Ss) -> lists:any(fun(S) -> lists:member(S, Wanted) end, Ss) end,
    %% The running applications serve several sections, and so does the old
    %% code walk: each is done once.
    Apps = case Need([versions, plugins, startup_files]) of
               true -> safe(fun() -> running_apps(?APPS_TIMEOUT) end);
               false -> []
           end,
    OldCode = case Need([limits, alarms, code_events]) of
                  true -> safe(fun beamside_vm:old_code/0);
                  false -> []
              end,
    Ctx = #{apps => Apps, old_code => OldCode},
    {Snap, Timings} =
        lists:foldl(
          fun(S, {Acc, Ts}) ->
                  S0 = erlang:monotonic_time(microsecond),
                  V = safe(fun() -> section(S, Opts, Ctx) end),
                  {Acc#{S => V}, Ts#{S => erlang:monotonic_time(microsecond) - S0}}
          end, {#{}, #{}}, Wanted),
    Packed = maps:filter(fun(K, V) -> is_map(V) andalso lists:member(K, ?PACKED) end, Snap),
    (maps:without(maps:keys(Packed), Snap))#{
        agent_version => ?VERSION,
        node => node(),
        system_time_us => SysTime,
        uptime_ms => uptime_ms(),
        timings => Timings,
        packed => term_to_binary(Packed),
        duration_us => erlang:monotonic_time(microsecond) - T0}.

opt_in(env_keys, Opts) -> is_list(maps:get(env_keys, Opts, false));
opt_in(Opt, Opts) -> maps:get(Opt, Opts, false) =:= true.

-spec section(section(), opts(), map()) -> term().
section(versions, Opts, #{apps := Apps}) -> versions(Opts, Apps);
section(processes, Opts, _) -> beamside_procs:walk(Opts);
section(plugins, Opts, #{apps := Apps}) -> plugins(Opts, Apps);
section(sysmon, _, _) -> beamside_sysmon:snapshot();
section(alarms, Opts, Ctx) -> beamside_alarms:section(Opts, Ctx);
section(startup_files, Opts, Ctx) -> beamside_checks:startup_files(Opts, Ctx);
section(modules, Opts, _) -> beamside_checks:modules(Opts);
section(env, Opts, _) -> beamside_checks:env(Opts);
section(code_events, Opts, Ctx) -> beamside_events:code_events(Opts, Ctx);
section(config_events, Opts, Ctx) -> beamside_events:config_events(Opts, Ctx);
section(S, Opts, Ctx) -> beamside_vm:section(S, Opts, Ctx).

versions(Opts, Apps) ->
    Base = #{otp_release => to_bin(erlang:system_info(otp_release)),
             erts_version => to_bin(erlang:system_info(version)),
             system_architecture => to_bin(erlang:system_info(system_architecture)),
             emulator_flavor => emu_flavor(),
             releases => safe(fun releases/0)},
    case {maps:get(versions, Opts, true), Apps} of
        {true, L} when is_list(L) -> Base#{applications => maps:from_list(L)};
        {true, Err} -> Base#{applications => Err};
        _ -> Base
    end.

%% release_handler:which_releases/0 (it runs with sasl), with a timeout:
%% [#{name, version, status}] for at most ?MAX_RELEASES releases, status
%% permanent | current | old | unpacked; not_running without release_handler.
releases() ->
    case whereis(release_handler) of
        undefined ->
            not_running;
        _ ->
            Rels = gen_server:call(release_handler, which_releases, ?RELEASES_MS),
            [#{name => to_bin(Name), version => to_bin(Vsn), status => Status}
             || {Name, Vsn, _Apps, Status} <- lists:sublist(Rels, ?MAX_RELEASES),
                is_atom(Status)]
    end.

plugins(Opts, Apps) when is_list(Apps) ->
    Names = [A || {A, _} <- Apps],
    Enabled = maps:get(plugins, Opts, all),
    Extra = [M || M <- maps:get(extra_plugins, Opts, []), is_atom(M)],
    Timeout = int_opt(plugin_timeout_ms, Opts, 2000, {10, 60000}),
    Mods = beamside_plugin:builtin() ++ Extra,
    lists:foldl(
      fun(Mod, Acc) ->
              case safe(fun() -> {Mod:name(), Mod:applies(Names)} end) of
                  {error, _} = E ->
                      Acc#{Mod => E};
                  {Name, true} ->
                      case Enabled =:= all orelse lists:member(Mod, Extra)
                          orelse (is_list(Enabled) andalso lists:member(Name, Enabled)) of
                          true ->
                              Run = fun() -> Mod:collect(Opts) end,
                              Acc#{Name => unwrap(run_bounded(Run, Timeout, []))};
                          false ->
                              Acc
                      end;
                  {_Name, _} ->
                      Acc
              end
      end, #{}, Mods);
plugins(_Opts, AppsError) ->
    {error, {applications, AppsError}}.

unwrap({ok, V}) -> V;
unwrap({error, _} = E) -> E.

%%% ---------------------------------------------------------------------------
%%% live

live_value(K, Opts) ->
    safe(fun() -> live_(K, Opts) end).

live_(process_count, _) -> erlang:system_info(process_count);
live_(port_count, _) -> erlang:system_info(port_count);
live_(reductions, _) -> element(1, erlang:statistics(reductions));
live_(context_switches, _) -> element(1, erlang:statistics(context_switches));
live_(run_queue, _) -> erlang:statistics(total_run_queue_lengths_all);
live_(memory_total, _) -> erlang:memory(total);
live_(io, _) ->
    {{input, In}, {output, Out}} = erlang:statistics(io),
    #{input => In, output => Out};
live_(gc, _) ->
    {N, W, _} = erlang:statistics(garbage_collection),
    #{count => N, words_reclaimed => W};
live_(K, Opts) ->
    case lists:member(K, ?SECTIONS) of
        true ->
            Apps = case K of
                       versions -> safe(fun() -> running_apps(?APPS_TIMEOUT) end);
                       plugins -> safe(fun() -> running_apps(?APPS_TIMEOUT) end);
                       _ -> []
                   end,
            OldCode = case K of
                          limits -> safe(fun beamside_vm:old_code/0);
                          alarms -> safe(fun beamside_vm:old_code/0);
                          _ -> []
                      end,
            section(K, Opts, #{apps => Apps, old_code => OldCode});
        false ->
            {error, unknown_key}
    end.

%%% ---------------------------------------------------------------------------
%%% info helpers

uptime_ms() ->
    erlang:convert_time_unit(erlang:monotonic_time() - erlang:system_info(start_time),
                             native, millisecond).

emu_flavor() ->
    try erlang:system_info(emu_flavor)
    catch error:badarg -> emu
    end.

agent_modules() ->
    maps:from_list([{M, hex(M:module_info(md5))}
                    || M <- erlang:loaded(), is_beamside(M)]).

is_beamside(M) ->
    lists:prefix(?PREFIX, atom_to_list(M)).

-spec hex(binary()) -> binary().
hex(Bin) ->
    << <<(hex_digit(N))>> || <<N:4>> <= Bin >>.

hex_digit(N) when N < 10 -> $0 + N;
hex_digit(N) -> $a + N - 10.

%% {Source, Name, Vsn} of the release this node runs, else of its main
%% application.
family_hint() ->
    case release_family() of
        {error, _} = NoRelease ->
            case main_application() of
                {Name, Vsn} -> {application, Name, Vsn};
                none -> NoRelease
            end;
        Release ->
            Release
    end.

release_family() ->
    case init:script_id() of
        {Name, Vsn} when is_list(Name) ->
            case default_script(Name) of
                false -> {boot_script, to_bin(Name), to_bin(Vsn)};
                true -> from_release_handler()
            end;
        _ ->
            from_release_handler()
    end.

default_script("Erlang/OTP") -> true;
default_script("OTP  APN 181 01") -> true;
default_script("OTP APN 181 01") -> true;
default_script(_) -> false.

from_release_handler() ->
    case whereis(release_handler) of
        undefined ->
            {error, no_release};
        _ ->
            Ask = fun(Status) ->
                          [{N, V} || {N, V, _, _} <- release_handler:which_releases(Status),
                                     not default_script(N)]
                  end,
            case run_bounded(fun() -> Ask(permanent) ++ Ask(current) end, 1000, []) of
                {ok, [{Name, Vsn} | _]} -> {release_handler, to_bin(Name), to_bin(Vsn)};
                {ok, []} -> {error, no_release};
                {error, _} = E -> E
            end
    end.

%% The node's main application, when it runs no release: a known application
%% (running or being started: RabbitMQ's `rabbit' starts for seconds) names
%% its product; else the root of the running applications that are not
%% OTP's or Elixir's own and that no other running application depends on
%% (applications / included_applications keys), preferring those with a
%% callback module (`mod'), then the one with the most running dependencies,
%% then the most recently started.  {NameBin, VsnBin} | none.
main_application() ->
    Running = running_apps(?APPS_TIMEOUT),            % most recent first
    Names = [A || {A, _} <- Running] ++ starting_apps(),
    case [{Family, A} || {A, Family} <- ?KNOWN_APPS, lists:member(A, Names)] of
        [{Family, A} | _] ->
            {Family, app_vsn(A, Running)};
        [] ->
            case root_application([A || {A, _} <- Running, not platform_app(A)]) of
                none -> none;
                A -> {truncate(atom_to_binary(A, utf8), 128), app_vsn(A, Running)}
            end
    end.

%% Applications being started now (application_controller's `starting'),
%% [] when that cannot be known within 1 s.
starting_apps() ->
    case run_bounded(fun application:info/0, ?APPS_TIMEOUT, []) of
        {ok, Info} when is_list(Info) ->
            [element(1, S) || S <- proplists:get_value(starting, Info, []),
                              is_tuple(S), tuple_size(S) > 0, is_atom(element(1, S))];
        _ ->
            []
    end.

root_application([]) ->
    none;
root_application(Apps) ->
    Deps = fun(A) -> [D || K <- [applications, included_applications],
                           {ok, L} <- [application:get_key(A, K)], is_list(L),
                           D <- L, lists:member(D, Apps)]
           end,
    Used = lists:usort(lists:append([Deps(A) || A <- Apps])),
    Roots = [A || A <- Apps, not lists:member(A, Used)],
    WithMod = [A || A <- Roots, case application:get_key(A, mod) of
                                    {ok, {M, _}} when is_atom(M) -> true;
                                    _ -> false
                                end],
    Pool = case WithMod of [] -> Roots; _ -> WithMod end,
    Ranked = [{-length(reach([A], Deps, [])), I, A}
              || {I, A} <- lists:zip(lists:seq(1, length(Pool)), Pool)],
    case lists:sort(Ranked) of
        [{_, _, Main} | _] -> Main;
        [] -> none
    end.

%% The running applications A depends on, transitively (bounded by Apps).
reach([], _Deps, Seen) ->
    Seen;
reach([A | Rest], Deps, Seen) ->
    New = [D || D <- Deps(A), not lists:member(D, Seen)],
    reach(New ++ Rest, Deps, lists:usort(New ++ Seen)).

app_vsn(A, Running) ->
    case lists:keyfind(A, 1, Running) of
        {_, V} -> V;
        false ->
            case application:get_key(A, vsn) of
                {ok, V} -> to_bin(V);
                _ -> <<>>
            end
    end.

%% OTP's and Elixir's own applications: never a node's main application.
platform_app(A) ->
    lists:member(A, [asn1, common_test, compiler, crypto, debugger, dialyzer, diameter,
                     edoc, eldap, erl_docgen, erl_interface, erts, et, eunit, ftp, hipe,
                     inets, jinterface, kernel, megaco, mnesia, observer, odbc, os_mon,
                     otp_mibs, parsetools, public_key, reltool, runtime_tools, sasl, snmp,
                     ssh, ssl, stdlib, syntax_tools, tftp, tools, wx, xmerl,
                     elixir, eex, ex_unit, iex, logger, mix, hex]).

%%% ---------------------------------------------------------------------------
%%% shared helpers

%% Running applications as [{App, VsnBinary}], with a time limit.
-spec running_apps(timeout()) -> [{atom(), binary()}].
running_apps(Timeout) ->
    [{A, to_bin(V)} || {A, _Desc, V} <- application:which_applications(Timeout)].

%% Run Fun in this process; an exception becomes {error, {Class, Reason}}.
-spec safe(fun(() -> T)) -> T | {error, term()}.
safe(Fun) ->
    try Fun()
    catch C:R -> {error, {C, reason(R)}}
    end.

%% Run Fun in a fresh process with a time limit (killed when it runs out).
-spec run_bounded(fun(() -> T), non_neg_integer(), [term()]) -> {ok, T} | {error, term()}.
run_bounded(Fun, Timeout, SpawnOpts) ->
    Parent = self(),
    Ref = make_ref(),
    {Pid, MRef} =
        spawn_opt(fun() ->
                          Reply = try {ok, Fun()}
                                  catch C:R -> {error, {C, reason(R)}}
                                  end,
                          Parent ! {Ref, Reply}
                  end, [monitor | SpawnOpts]),
    receive
        {Ref, Reply} ->
            erlang:demonitor(MRef, [flush]),
            Reply;
        {'DOWN', MRef, process, Pid, Why} ->
            {error, {exit, reason(Why)}}
    after Timeout ->
            exit(Pid, kill),
            erlang:demonitor(MRef, [flush]),
            receive {Ref, Late} -> Late
            after 0 -> {error, timeout}
            end
    end.

%% A small, bounded version of an error reason for the wire.
-spec reason(term()) -> term().
reason(R) when is_atom(R); is_integer(R) -> R;
reason({R, Extra}) when is_atom(R), is_atom(Extra) -> {R, Extra};
reason(R) ->
    Text = case unicode:characters_to_binary(io_lib:format("~0tP", [R, 12])) of
               B when is_binary(B) -> B;
               _ -> iolist_to_binary(io_lib:format("~0P", [R, 12]))
           end,
    truncate(Text, 259).

%% At most Max bytes of a (UTF-8) binary, cut on a character boundary, with
%% "..." at the end when cut.
-spec truncate(binary(), pos_integer()) -> binary().
truncate(Bin, Max) when byte_size(Bin) =< Max ->
    Bin;
truncate(Bin, Max) ->
    Part = binary:part(Bin, 0, max(0, Max - 3)),
    Good = case unicode:characters_to_binary(Part) of
               {incomplete, G, _} -> G;
               _ -> Part
           end,
    <<Good/binary, "...">>.

-spec opt(atom(), map(), term()) -> term().
opt(Key, Opts, Default) -> maps:get(Key, Opts, Default).

%% An integer option, clamped into [Min, Max]; anything else is the default.
-spec int_opt(atom(), map(), integer(), {integer(), integer()}) -> integer().
int_opt(Key, Opts, Default, {Min, Max}) ->
    case maps:get(Key, Opts, Default) of
        V when is_integer(V) -> max(Min, min(Max, V));
        _ -> Default
    end.

-spec to_bin(term()) -> binary().
to_bin(B) when is_binary(B) -> B;
to_bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
to_bin(I) when is_integer(I) -> integer_to_binary(I);
to_bin(L) when is_list(L) ->
    try unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    catch _:_ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    end;
to_bin(T) -> iolist_to_binary(io_lib:format("~0tp", [T])).

-spec mfa_bin(term()) -> binary().
mfa_bin({M, F, A}) when is_atom(M), is_atom(F), is_integer(A) ->
    <<(atom_to_binary(M, utf8))/binary, ":", (atom_to_binary(F, utf8))/binary, "/",
      (integer_to_binary(A))/binary>>;
mfa_bin(_) -> <<>>.

-spec pid_bin(pid()) -> binary().
pid_bin(Pid) -> list_to_binary(pid_to_list(Pid)).
