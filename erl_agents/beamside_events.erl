%%% ===========================================================================
%%% beamside_events -- the log and notification forwarder.
%%% ===========================================================================
%%%
%%% A gen_server registered as beamside_events, started and linked by
%%% beamside_sysmon when a sidecar attaches with event options (see
%%% beamside_agent:attach/2), stopped by it (stop/0 from its terminate/2, or
%%% the link: it traps exits and stops when beamside_sysmon exits), and
%%% stopping by itself when no sidecar wants events any more.  Its
%%% terminate/2 removes what it installed: the logger handler `beamside'
%%% (beamside_logger) and the lager backend (beamside_lager).  It sends the
%%% sidecars batches of events:
%%%
%%%   {beamside_events, Node, Seq, Events, Dropped, Session}
%%%
%%% to the registered name beamside_events on each sidecar node that asked
%%% for events, with erlang:send(Dest, Msg, [nosuspend, noconnect]): it never
%%% blocks on a slow or gone sidecar.  Session is an integer made when this
%%% process starts (unique on this node, across restarts too); Seq counts
%%% batches per sidecar from 1, so {Node, Session, Seq} names a batch.
%%% Dropped is #{Reason => Count}: the drops since the previous batch (a
%%% count evicted with its batch is reported again).  Events is a list of
%%% maps, oldest first:
%%%
%%%   logs (kind => log): see beamside_logger (source => logger) and
%%%     beamside_lager (source => lager).  lager's copy of an OTP report
%%%     (its error_logger redirection) is left out: logger forwarded it.
%%%   notifications (kind => notification, level, time (ns), node, type, msg):
%%%     shell_command   an expression typed in an Erlang shell of this node:
%%%                     command (number), msg (the expression, erl_pp,
%%%                     bounded; its string literals redacted when it names
%%%                     a secret: beamside_redact:redact_exprs/1), shell (pid text), group_leader (pid text),
%%%                     shell_node (the node its group leader is on: where the
%%%                     operator sits; another node for `erl -remsh'), remote
%%%                     (boolean).  Level notice.
%%%     sysmon          a system monitor event: event (long_gc |
%%%                     long_schedule | large_heap | busy_port |
%%%                     busy_dist_port), pid (text), registered_name,
%%%                     current_function (binary "m:f/a"), info (printed,
%%%                     bounded), msg.  Level warning.
%%%   Module loaded / reloaded / purged / deleted notifications come through
%%%   the `code_events' collect section instead (code_events/2 below), and
%%%   application environment changes through `config_events'
%%%   (config_events/2 below).
%%%
%%% Acknowledgement and retention (nothing lost when a sidecar crashes):
%%% every batch is kept, per sidecar, until that sidecar acknowledges it with
%%%
%%%   {beamside_events_ack, SidecarNode, Session, Seq}
%%%
%%% sent to the registered name beamside_events on this node: every batch
%%% of that sidecar up to Seq is forgotten (the sidecar sends it once the
%%% batch is durable on its side: fsynced in its spool or accepted by Loki).
%%% Batches go in Seq order and a batch is never sent before an older one
%%% went: a send that finds the distribution buffer busy (`nosuspend')
%%% leaves the batch and the ones after it waiting; they are tried again
%%% 10 ms later.  Retention is bounded per sidecar: retain_events events
%%% (50,000) and retain_bytes (32 MiB, message bytes + 200 per event);
%%% beyond it the oldest batches are dropped: those never sent are counted
%%% (`retain_overflow', reported with the next batch); a sent one the
%%% sidecar does not have is a gap in Seq it sees: never silent.
%%%
%%% Sidecar gone (nodedown, e.g. SIGKILL): beamside_sysmon tells us
%%% (sidecar_down/1) and stays while we run; the logger handler and lager
%%% backend stay installed and that sidecar's events are still captured
%%% into its retention for grace_s seconds (120).  When the same sidecar
%%% node attaches again within that time (configure/2), the batches it had
%%% not acknowledged are sent again first, in order, then the new ones; the
%%% sidecar drops those it had already made durable ({Node, Session, Seq}).
%%% After grace_s with no return, the sidecar is forgotten; when it was the
%%% last one we stop and terminate/2 removes everything, then
%%% beamside_sysmon stops and its watchdog removes the modules: no residue
%%% after a sidecar crash once the grace period is over (the compromise
%%% between the guide's "no residue" and "a crash loses nothing"; grace_s 0
%%% removes everything at once, as before).  A clean detach (or an attach
%%% without event options) removes the sidecar at once, retention included.
%%%
%%% Batching: a batch goes when batch_size events are buffered, batch_bytes
%%% of text are buffered, or batch_ms after the first buffered event; a batch
%%% without events but with new drops goes at most once a second.  A sidecar
%%% gets the log events at or above its own level and the notification types
%%% it asked for.
%%%
%%% Rate limits (token buckets, one second of burst): max_rate events/s for
%%% logs and shell commands together, sysmon_events_rate for sysmon events;
%%% beyond them events are dropped and counted (`rate', `sysmon_rate').
%%%
%%% Shell expressions: the shell server process (shell.erl, OTP 25 to 28)
%%% keeps the last commands (stdlib `shell_history_length', 20) in its process
%%% dictionary as {command, N} => [Expr] and refers to its evaluator as
%%% `evaluator'.  Shell servers are found without walking every process:
%%%   local shells    processes linked to `user' or `user_drv', and to the
%%%                   processes linked to those (the groups): the shell
%%%                   servers among them (current function in module shell,
%%%                   `evaluator' in the dictionary); every poll.
%%%   remote shells   (`erl -remsh', JCL `r'): a walk of the processes whose
%%%                   group leader lives on another node, 1 s and 4 s after
%%%                   a node (other than a sidecar) connects (at most one
%%%                   walk every 3 s), and at start;
%%%                   optionally every shell_scan_s seconds (0: never, the
%%%                   default; a JCL `r' shell from an already connected node
%%%                   is only seen by that periodic scan).
%%% Every shell_poll_ms (1000) the known shells whose reduction count moved
%%% have their dictionary read and new commands emitted.  A command is stored
%%% by the shell when its evaluation ends: a command still running is not
%%% seen yet, and the time is the time it was seen.  The shells present at
%%% the attach that turns shell events on are a baseline (their earlier
%%% commands are not emitted); shells
%%% found later have all their kept commands emitted.  On OTP 25 a read
%%% copies the whole dictionary (the last 20 results included): one read per
%%% poll in which the shell did something.  IEx is not covered: Elixir 1.14
%%% keeps only results in its evaluator (`iex_history'), not the code typed.
%%%
%%% Options (configure/2; the `events' map is node-wide, last one wins):
%%%   logs => #{level => Level | none (warning), max_bytes (8192),
%%%             depth (30), single_line (false), lager (true)}
%%%   shell_events => boolean()         (true)
%%%   sysmon_events => boolean()        (false)
%%%   sysmon_events_rate => integer()   (10 per s)
%%%   events => #{max_rate (2000 per s), batch_size (500), batch_ms (200),
%%%               batch_bytes (262144), max_queue (5000), shell_poll_ms
%%%               (1000), shell_scan_s (0), retain_events (50000),
%%%               retain_bytes (33554432), grace_s (120)}
%%% ===========================================================================
-module(beamside_events).
-behaviour(gen_server).

-export([start_link/0, configure/2, remove_sidecar/1, sidecar_down/1, stop/0,
         wants_events/1, sysmon_event/3]).
-export([code_events/2, config_events/2, discover_shells/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(NAME, ?MODULE).
-define(HANDLER, beamside).
-define(CALL_MS, 1000).
-define(TICK_MS, 1000).
-define(MAX_SCAN, 500000).
-define(MIN_SCAN_MS, 3000).
-define(MAX_CODE_EVENTS, 1000).
-define(MAX_CONFIG_EVENTS, 200).
-define(MAX_ENV_KEYS, 20000).
-define(ENV_TEXT_CHARS, 1000).
-define(EXPR_WORDS, 20000).
-define(EXPR_BYTES, 8192).
-define(PUMP_MS, 10).
-define(EVENT_KEYS, [logs, shell_events, sysmon_events, sysmon_events_rate, events]).

-record(sc, {level = none :: atom(),
             shell = false :: boolean(),
             sysmon = false :: boolean(),
             seq = 0 :: non_neg_integer(),
             %% cumulative drops already reported to this sidecar
             reported = #{} :: #{atom() => non_neg_integer()},
             %% cumulative drops of this sidecar only (retention overflow)
             own = #{} :: #{atom() => non_neg_integer()},
             %% monotonic ms of the last batch sent (undefined: none yet)
             last_report = undefined :: undefined | integer(),
             %% connected (false: gone, within its grace period)
             up = true :: boolean(),
             grace = undefined :: undefined | reference(),
             %% retained batches, oldest first: sent and not acknowledged,
             %% then not sent yet (in order: a batch never overtakes one)
             sent = queue:new() :: queue:queue(batch()),
             unsent = queue:new() :: queue:queue(batch()),
             rn = 0 :: non_neg_integer(),
             rbytes = 0 :: non_neg_integer(),
             %% a `pump' message is on its way (a send found the buffer busy)
             retry = false :: boolean()}).

-type batch() :: {Seq :: pos_integer(), Msg :: tuple(), Events :: non_neg_integer(),
                  Bytes :: non_neg_integer(), Dropped :: map()}.

-record(s, {parent :: pid(),
            session :: pos_integer(),
            sidecars = #{} :: #{node() => #sc{}},
            log_cfg = #{} :: map(),
            ev_cfg = #{} :: map(),
            sysmon_rate = 10 :: pos_integer(),
            buf = [] :: [map()],
            n = 0 :: non_neg_integer(),
            bytes = 0 :: non_neg_integer(),
            timer = undefined :: undefined | reference(),
            drops :: counters:counters_ref(),
            local = #{} :: #{atom() => non_neg_integer()},
            bucket :: {float(), integer()},
            sys_bucket :: {float(), integer()},
            logger = none :: atom(),
            lager = undefined :: undefined | pid(),
            lager_failed :: integer(),
            shells = #{} :: #{pid() => {non_neg_integer(), non_neg_integer() | undefined}},
            scans = [] :: [integer()],
            last_scan :: integer(),
            last_poll :: integer(),
            monitoring = false :: boolean(),
            %% recent logger events {Pid, Level, Ms} while lager is attached
            seen = [] :: [{binary(), atom(), integer()}]}).

%% How long, and how many, logger events are remembered to recognise the
%% copy lager's error_logger redirection makes of them.
-define(DUP_MS, 5000).
-define(DUP_MAX, 64).

%%% ---------------------------------------------------------------------------
%%% API (called by beamside_sysmon)

%% Started, then linked (not gen_server:start_link: with that, our parent's
%% exit would make gen_server terminate us with the parent's reason, and a
%% reason such as `killed' is a crash report in the node's log; here the
%% parent's 'EXIT' (or 'DOWN') is an ordinary message and we stop normally).
-spec start_link() -> {ok, pid()} | {error, term()}.
start_link() ->
    case gen_server:start({local, ?NAME}, ?MODULE, self(), [{timeout, 5000}]) of
        {ok, Pid} -> link(Pid), {ok, Pid};
        Other -> Other
    end.

%% Add or update a sidecar's event options.
-spec configure(node(), map()) -> ok | {error, term()}.
configure(Sidecar, Opts) ->
    try gen_server:call(?NAME, {configure, Sidecar, maps:with(?EVENT_KEYS, Opts)}, 5000)
    catch exit:{Why, _} -> {error, beamside_agent:reason(Why)}
    end.

%% The sidecar's connection is gone (nodedown): keep its events for its
%% grace period (see the module header).
-spec sidecar_down(node()) -> ok.
sidecar_down(Sidecar) ->
    case whereis(?NAME) of
        undefined -> ok;
        Pid -> Pid ! {sidecar_down, Sidecar}, ok
    end.

-spec remove_sidecar(node()) -> ok.
remove_sidecar(Sidecar) ->
    case whereis(?NAME) of
        undefined -> ok;
        Pid -> Pid ! {remove_sidecar, Sidecar}, ok
    end.

%% Stop it, whatever races with the stop (see beamside_sysmon:stop_server/2).
-spec stop() -> ok.
stop() ->
    beamside_sysmon:stop_server(?NAME, 5000).

%% Does this attach option map ask for the event stream?
-spec wants_events(map()) -> boolean().
wants_events(Opts) ->
    maps:size(maps:with(?EVENT_KEYS, Opts)) > 0.

%% A system monitor event, from beamside_sysmon (only when a sidecar wants
%% them): dropped when the forwarder's queue is long.
-spec sysmon_event(pid() | port(), atom(), term()) -> ok.
sysmon_event(Who, Event, Info) ->
    case whereis(?NAME) of
        undefined -> ok;
        Pid ->
            case erlang:process_info(Pid, message_queue_len) of
                {message_queue_len, N} when N < 5000 ->
                    Pid ! {beamside_sysmon, Who, Event, Info, os:system_time(nanosecond)},
                    ok;
                _ ->
                    ok
            end
    end.

%%% ---------------------------------------------------------------------------
%%% gen_server

init(Parent) ->
    _ = process_flag(trap_exit, true),
    _ = erlang:monitor(process, Parent),
    _ = process_flag(message_queue_data, off_heap),
    case whereis(user) of
        undefined -> ok;
        User -> group_leader(User, self())
    end,
    Now = erlang:monotonic_time(millisecond),
    Long = Now - 86400000,                  % monotonic time may be negative
    erlang:send_after(?TICK_MS, self(), tick),
    %% The buckets start full (capped to the rate at the first take).
    %% Unique per forwarder run, also across node restarts (the clock moved).
    Session = erlang:system_time(microsecond) * 1024
        + erlang:unique_integer([positive]) rem 1024,
    {ok, #s{parent = Parent, session = Session, drops = beamside_logger:new_drops(),
            bucket = {1.0e9, Now}, sys_bucket = {1.0e9, Now},
            lager_failed = Long, last_scan = Long, last_poll = Long}}.

handle_call({configure, Sidecar, Opts}, _From, #s{sidecars = Scs} = St) ->
    Logs = case maps:get(logs, Opts, undefined) of
               M when is_map(M) -> M;
               _ -> #{level => none}
           end,
    Level = case maps:get(level, Logs, warning) of
                L when is_atom(L) -> valid_level(L);
                _ -> warning
            end,
    Sc0 = back_up(maps:get(Sidecar, Scs, #sc{})),
    Sc = Sc0#sc{level = Level,
                shell = maps:get(shell_events, Opts, true) =:= true,
                sysmon = maps:get(sysmon_events, Opts, false) =:= true},
    LogCfg = case Level of
                 none -> St#s.log_cfg;
                 _ -> Logs
             end,
    EvCfg = case maps:get(events, Opts, undefined) of
                E when is_map(E) -> E;
                _ -> St#s.ev_cfg
            end,
    SysRate = beamside_agent:int_opt(sysmon_events_rate, Opts, St#s.sysmon_rate, {1, 100000}),
    St1 = St#s{sidecars = Scs#{Sidecar => Sc}, log_cfg = LogCfg, ev_cfg = EvCfg,
               sysmon_rate = SysRate},
    St2 = install(monitor_nodes(St1)),
    %% A sidecar back within its grace period: what it has not acknowledged
    %% goes again first, in order.
    {reply, ok, pump_all(St2)};
handle_call(_Other, _From, St) ->
    {reply, {error, unknown_call}, St}.

handle_cast(_Msg, St) ->
    {noreply, St}.

handle_info({beamside_log, Event}, St) ->
    {noreply, take_log(Event, St)};
handle_info({beamside_sysmon, Who, Event, Info, Time}, St) ->
    case any(fun(Sc) -> Sc#sc.sysmon end, St) of
        true -> {noreply, sysmon(Who, Event, Info, Time, St)};
        false -> {noreply, St}
    end;
handle_info(flush, St) ->
    {noreply, flush(St#s{timer = undefined})};
handle_info(tick, St) ->
    erlang:send_after(?TICK_MS, self(), tick),
    St1 = shells(ensure_installed(St)),
    {noreply, pump_all(report_drops(flush(St1)))};
handle_info(pump, #s{sidecars = Scs} = St) ->
    {noreply, pump_all(St#s{sidecars = maps:map(fun(_, Sc) -> Sc#sc{retry = false} end, Scs)})};
handle_info({beamside_events_ack, Node, Session, Seq}, #s{session = Session} = St)
  when is_integer(Seq) ->
    case maps:find(Node, St#s.sidecars) of
        {ok, Sc} -> {noreply, St#s{sidecars = (St#s.sidecars)#{Node => ack(Seq, Sc)}}};
        error -> {noreply, St}
    end;
handle_info({remove_sidecar, Node}, St) ->
    forget(Node, St);
handle_info({sidecar_down, Node}, St) ->
    {noreply, down(Node, St)};
handle_info({grace_expired, Node, Ref}, #s{sidecars = Scs} = St) ->
    case maps:find(Node, Scs) of
        {ok, #sc{up = false, grace = Ref}} -> forget(Node, St);
        _ -> {noreply, St}
    end;
handle_info({nodedown, Node, _}, St) ->
    {noreply, down(Node, St)};
handle_info({nodeup, Node, _}, #s{sidecars = Scs} = St) ->
    case maps:is_key(Node, Scs) of
        true ->
            {noreply, St};
        false ->
            %% Perhaps a remote shell: it starts just after the connection.
            Now = erlang:monotonic_time(millisecond),
            {noreply, St#s{scans = lists:usort([Now + 1000, Now + 4000 | St#s.scans])}}
    end;
handle_info({'EXIT', Parent, _Why}, #s{parent = Parent} = St) ->
    {stop, normal, St};
handle_info({'DOWN', _, process, Parent, _Why}, #s{parent = Parent} = St) ->
    {stop, normal, St};
handle_info({'EXIT', Lager, _Why}, #s{lager = Lager} = St) ->
    {noreply, St#s{lager = undefined}};
handle_info({gen_event_EXIT, beamside_lager, _Why}, St) ->
    {noreply, St#s{lager = undefined}};
handle_info(_Other, St) ->
    {noreply, St}.

terminate(_Reason, St) ->
    _ = remove_logger(St),
    _ = remove_lager(St),
    ok.

%%% ---------------------------------------------------------------------------
%%% sidecars

forget(Node, #s{sidecars = Scs} = St) ->
    case maps:find(Node, Scs) of
        {ok, #sc{grace = T}} when T =/= undefined -> _ = erlang:cancel_timer(T), ok;
        _ -> ok
    end,
    Left = maps:remove(Node, Scs),
    case map_size(Left) of
        0 -> {stop, normal, St#s{sidecars = Left}};
        _ -> {noreply, install(St#s{sidecars = Left})}
    end.

any(Pred, #s{sidecars = Scs}) ->
    lists:any(Pred, maps:values(Scs)).

%% Hear about nodes connecting (remote shells) once some sidecar wants
%% shell events.
monitor_nodes(#s{monitoring = false} = St) ->
    case any(fun(Sc) -> Sc#sc.shell end, St) of
        true ->
            ok = net_kernel:monitor_nodes(true, [{node_type, all}]),
            %% The shells already there are the baseline: what they ran
            %% before this attach returns is not reported.
            Found = lists:usort(discover_shells(local) ++ discover_shells(remote)),
            Shells = maps:from_list([{P, {max_command(P), undefined}} || P <- Found]),
            St#s{monitoring = true, shells = Shells,
                 last_scan = erlang:monotonic_time(millisecond)};
        false ->
            St
    end;
monitor_nodes(St) ->
    St.

valid_level(L) ->
    case beamside_logger:level_int(L) of
        99 -> none;
        _ -> L
    end.

%% The most verbose level a sidecar asked for (none when nobody wants logs).
min_level(#s{sidecars = Scs}) ->
    lists:foldl(fun(#sc{level = L}, Acc) ->
                        case beamside_logger:level_int(L) < beamside_logger:level_int(Acc) of
                            true -> L;
                            false -> Acc
                        end
                end, none, maps:values(Scs)).

%%% ---------------------------------------------------------------------------
%%% logger handler and lager backend

install(St) ->
    install_lager(install_logger(St)).

ensure_installed(#s{logger = none} = St) ->
    install_lager(St);
ensure_installed(St) ->
    %% Re-add the handler if somebody removed it.
    case lists:member(?HANDLER, logger:get_handler_ids()) of
        true -> install_lager(St);
        false -> install(St#s{logger = none})
    end.

handler_config(St, Level) ->
    Cfg = St#s.log_cfg,
    Ev = St#s.ev_cfg,
    #{level => Level,
      filter_default => log,
      filters => [],
      config => #{max_bytes => maps:get(max_bytes, Cfg, 8192),
                  depth => maps:get(depth, Cfg, 30),
                  single_line => maps:get(single_line, Cfg, false),
                  max_queue => maps:get(max_queue, Ev, 5000),
                  drops => St#s.drops}}.

install_logger(#s{logger = Cur} = St) ->
    case min_level(St) of
        none ->
            remove_logger(St),
            St#s{logger = none};
        Level when Cur =:= none ->
            Config = handler_config(St, Level),
            case catch logger:add_handler(?HANDLER, beamside_logger, Config) of
                ok ->
                    St#s{logger = Level};
                {error, {already_exist, _}} ->
                    _ = (catch logger:set_handler_config(?HANDLER, maps:remove(id, Config))),
                    St#s{logger = Level};
                _Error ->
                    St
            end;
        Level ->
            #{config := C} = handler_config(St, Level),
            _ = (catch logger:update_handler_config(?HANDLER, #{level => Level, config => C})),
            St#s{logger = Level}
    end.

remove_logger(#s{logger = none}) ->
    ok;
remove_logger(_St) ->
    _ = (catch logger:remove_handler(?HANDLER)),
    ok.

lager_wanted(St) ->
    min_level(St) =/= none andalso maps:get(lager, St#s.log_cfg, true) =:= true.

install_lager(#s{lager = Cur} = St) ->
    Manager = whereis(lager_event),
    case {lager_wanted(St), Manager, Cur} of
        {false, _, undefined} ->
            St;
        {false, _, _} ->
            remove_lager(St),
            St#s{lager = undefined};
        {true, undefined, _} ->
            St#s{lager = undefined};
        {true, M, M} ->
            case set_lager_level(M, min_level(St)) of
                ok -> St;
                gone -> install_lager(St#s{lager = undefined})      % removed by somebody
            end;
        {true, M, _} ->
            Now = erlang:monotonic_time(millisecond),
            case Now - St#s.lager_failed < 60000 of
                true -> St;
                false -> add_lager(M, St)
            end
    end.

add_lager(Manager, St) ->
    Args = #{level => min_level(St),
             max_bytes => maps:get(max_bytes, St#s.log_cfg, 8192),
             max_queue => maps:get(max_queue, St#s.ev_cfg, 5000),
             drops => St#s.drops},
    %% gen_event:add_handler/3 is this request with no time limit.  Not a
    %% supervised handler: the manager would hand our exit to every other
    %% backend's handle_info/2.  terminate/2 deletes it; if we are killed,
    %% it removes itself at its next event (and the watchdog removes it).
    case catch gen:call(Manager, self(), {add_handler, beamside_lager, Args}, ?CALL_MS) of
        {ok, ok} ->
            lager_levels_changed(),
            St#s{lager = Manager};
        _ ->
            St#s{lager_failed = erlang:monotonic_time(millisecond)}
    end.

set_lager_level(Manager, Level) ->
    case catch gen_event:call(Manager, beamside_lager, get_loglevel, ?CALL_MS) of
        {mask, Mask} ->
            case beamside_lager:mask(Level) of
                Mask -> ok;
                _ -> _ = (catch gen_event:call(Manager, beamside_lager, {set_loglevel, Level},
                                               ?CALL_MS)),
                     lager_levels_changed()
            end;
        {error, bad_module} ->
            gone;
        _ ->
            ok
    end.

remove_lager(#s{lager = undefined}) ->
    ok;
remove_lager(#s{lager = Manager}) ->
    _ = beamside_agent:run_bounded(
          fun() -> gen_event:delete_handler(Manager, beamside_lager, remove) end, ?CALL_MS, []),
    lager_levels_changed(),
    ok.

%% lager keeps the union of its backends' levels: recompute it.
lager_levels_changed() ->
    _ = beamside_agent:run_bounded(
          fun() ->
                  case erlang:function_exported(lager, update_loglevel_config, 1) of
                      true -> apply(lager, update_loglevel_config, [lager_event]);
                      false -> ok
                  end
          end, ?CALL_MS, []),
    ok.

%%% ---------------------------------------------------------------------------
%%% buffering, rate limits, batches

cfg(Key, St, Default, Range) ->
    beamside_agent:int_opt(Key, St#s.ev_cfg, Default, Range).

%% Token bucket: Rate tokens per second, at most Rate kept.
take_token({Tokens, Last}, Rate) ->
    Now = erlang:monotonic_time(millisecond),
    T = min(float(Rate), Tokens + (Now - Last) * Rate / 1000),
    case T >= 1.0 of
        true -> {true, {T - 1.0, Now}};
        false -> {false, {T, Now}}
    end.

count_local(Reason, #s{local = L} = St) ->
    St#s{local = maps:update_with(Reason, fun(N) -> N + 1 end, 1, L)}.

%% With lager redirecting error_logger (its default), an OTP report (a crash
%% or supervisor report, an error_logger call) comes twice: from logger,
%% then from lager's error_logger handler as a lager message whose pid
%% metadata is the pid itself (lager's own calls carry it as a string).
%% That copy is left out: not a loss, so not counted as a drop.
take_log(#{source := lager} = Event, St) ->
    case maps:take(redirected, Event) of
        {true, #{pid := Pid, level := Level} = Ev} ->
            Now = erlang:monotonic_time(millisecond),
            Copy = lists:any(fun({P, L, T}) -> P =:= Pid andalso L =:= Level
                                                   andalso Now - T =< ?DUP_MS
                             end, St#s.seen),
            case Copy of
                true -> St;
                false -> take(Ev, St)
            end;
        {_, Ev} -> take(Ev, St);
        error -> take(Event, St)
    end;
take_log(#{source := logger, pid := Pid, level := Level} = Event, #s{lager = Lager} = St)
  when is_pid(Lager) ->
    Seen = [{Pid, Level, erlang:monotonic_time(millisecond)}
            | lists:sublist(St#s.seen, ?DUP_MAX - 1)],
    take(Event, St#s{seen = Seen});
take_log(Event, St) ->
    take(Event, St).

take(Event, St) ->
    case take_token(St#s.bucket, cfg(max_rate, St, 2000, {1, 1000000})) of
        {true, B} -> buffer(Event, St#s{bucket = B});
        {false, B} -> count_local(rate, St#s{bucket = B})
    end.

event_size(#{msg := M}) when is_binary(M) -> byte_size(M) + 200;
event_size(_) -> 200.

buffer(Event, #s{buf = Buf, n = N, bytes = Bytes} = St) ->
    Size = event_size(Event),
    St1 = St#s{buf = [Event | Buf], n = N + 1, bytes = Bytes + Size},
    case St1#s.n >= cfg(batch_size, St, 500, {1, 10000})
        orelse St1#s.bytes >= cfg(batch_bytes, St, 262144, {1024, 16#4000000}) of
        true ->
            flush(St1);
        false when St1#s.timer =:= undefined ->
            T = erlang:send_after(cfg(batch_ms, St, 200, {1, 60000}), self(), flush),
            St1#s{timer = T};
        false ->
            St1
    end.

flush(#s{n = 0} = St) ->
    St;
flush(#s{buf = Buf, sidecars = Scs} = St) ->
    case St#s.timer of
        undefined -> ok;
        T -> _ = erlang:cancel_timer(T), ok
    end,
    Events = lists:reverse(Buf),
    Global = global_drops(St),
    Now = erlang:monotonic_time(millisecond),
    Scs1 = maps:map(fun(Node, Sc) ->
                            Mine = [E || E <- Events, wanted(E, Sc)],
                            send(Node, Mine, Global, Now, Sc, St)
                    end, Scs),
    St#s{buf = [], n = 0, bytes = 0, timer = undefined, sidecars = Scs1}.

%% Once a second: a batch with no events for the sidecars that have drops
%% not reported yet.
report_drops(#s{sidecars = Scs} = St) ->
    Global = global_drops(St),
    Now = erlang:monotonic_time(millisecond),
    Scs1 = maps:map(fun(Node, #sc{last_report = Last} = Sc) ->
                            case Last =:= undefined orelse Now - Last >= 1000 of
                                true -> send(Node, [], Global, Now, Sc, St);
                                false -> Sc
                            end
                    end, Scs),
    St#s{sidecars = Scs1}.

global_drops(#s{drops = Ref, local = Local}) ->
    maps:merge(beamside_logger:drops(Ref), Local).

%% A new batch for a sidecar: numbered, retained until acknowledged, sent
%% when every older one has gone (at once when the sidecar is up and
%% nothing older waits).
send(Node, Events, Global, Now, #sc{seq = Seq, reported = Rep, own = Own} = Sc, St) ->
    Cum = maps:merge(Global, Own),
    Delta = maps:filter(fun(_, V) -> V > 0 end,
                        maps:map(fun(K, V) -> V - maps:get(K, Rep, 0) end, Cum)),
    case {Events, map_size(Delta)} of
        {[], 0} ->
            Sc;
        _ ->
            Seq1 = Seq + 1,
            Msg = {beamside_events, node(), Seq1, Events, Delta, St#s.session},
            Bytes = lists:sum([event_size(E) || E <- Events]),
            B = {Seq1, Msg, length(Events), Bytes, Delta},
            Sc1 = Sc#sc{seq = Seq1, reported = Cum, last_report = Now,
                        unsent = queue:in(B, Sc#sc.unsent),
                        rn = Sc#sc.rn + length(Events), rbytes = Sc#sc.rbytes + Bytes},
            pump(Node, bound(Sc1, cfg(retain_events, St, 50000, {1, 10000000}),
                             cfg(retain_bytes, St, 33554432, {65536, 16#40000000})))
    end.

%% Send the batches not sent yet, oldest first, while the sidecar is up and
%% the sends go through (nosuspend: a busy distribution buffer stops the
%% pump; it goes on ?PUMP_MS later).
pump(_Node, #sc{up = false} = Sc) ->
    Sc;
pump(Node, #sc{unsent = Q} = Sc) ->
    case queue:out(Q) of
        {empty, _} ->
            Sc;
        {{value, {_, Msg, _, _, _} = B}, Rest} ->
            case catch erlang:send({beamside_events, Node}, Msg, [nosuspend, noconnect]) of
                ok ->
                    pump(Node, Sc#sc{unsent = Rest, sent = queue:in(B, Sc#sc.sent)});
                _ when Sc#sc.retry ->
                    Sc;
                _ ->
                    _ = erlang:send_after(?PUMP_MS, self(), pump),
                    Sc#sc{retry = true}
            end
    end.

pump_all(#s{sidecars = Scs} = St) ->
    St#s{sidecars = maps:map(fun pump/2, Scs)}.

%% The sidecar has made every batch up to Seq durable: forget them.
ack(Seq, #sc{sent = S, unsent = U} = Sc) ->
    {S1, N1, B1} = drop_acked(Seq, S, 0, 0),
    {U1, N2, B2} = drop_acked(Seq, U, 0, 0),
    Sc#sc{sent = S1, unsent = U1, rn = Sc#sc.rn - N1 - N2, rbytes = Sc#sc.rbytes - B1 - B2}.

drop_acked(Seq, Q, N, B) ->
    case queue:peek(Q) of
        {value, {S, _, En, Eb, _}} when S =< Seq -> drop_acked(Seq, queue:drop(Q), N + En, B + Eb);
        _ -> {Q, N, B}
    end.

%% Retention bound: beyond retain_events events or retain_bytes bytes the
%% oldest batches go.  A batch never sent is lost: its events are counted
%% as `retain_overflow' (and the drops it carried reported again with the
%% next batch).  A batch sent and not acknowledged yet may have arrived: it
%% is not counted here; should the sidecar not have it after a crash, it
%% sees the gap in Seq (beamside_node_event_batches_missing).
bound(#sc{rn = N, rbytes = B} = Sc, MaxN, MaxB) when N =< MaxN, B =< MaxB ->
    Sc;
bound(#sc{rn = N, rbytes = B} = Sc, MaxN, MaxB) ->
    Sc2 = case queue:out(Sc#sc.sent) of
              {{value, {_, _, En, Eb, _}}, Rest} ->
                  Sc#sc{sent = Rest, rn = N - En, rbytes = B - Eb};
              {empty, _} ->
                  {{value, {_, _, En, Eb, Delta}}, Rest} = queue:out(Sc#sc.unsent),
                  Rep = maps:map(fun(K, R) -> R - maps:get(K, Delta, 0) end, Sc#sc.reported),
                  Own = maps:update_with(retain_overflow, fun(X) -> X + En end, En, Sc#sc.own),
                  Sc#sc{unsent = Rest, rn = N - En, rbytes = B - Eb, reported = Rep, own = Own}
          end,
    case queue:is_empty(Sc2#sc.sent) andalso queue:is_empty(Sc2#sc.unsent) of
        true -> Sc2;
        false -> bound(Sc2, MaxN, MaxB)
    end.

%% A sidecar's connection is gone: its batches stay (the sent ones will go
%% again, first) for grace_s seconds; then it is forgotten.
down(Node, #s{sidecars = Scs} = St) ->
    case maps:find(Node, Scs) of
        {ok, #sc{up = true} = Sc} ->
            Ref = make_ref(),
            Ms = 1000 * cfg(grace_s, St, 120, {0, 86400}),
            _ = erlang:send_after(Ms, self(), {grace_expired, Node, Ref}),
            Requeued = queue:join(Sc#sc.sent, Sc#sc.unsent),
            St#s{sidecars = Scs#{Node => Sc#sc{up = false, grace = Ref, sent = queue:new(),
                                                unsent = Requeued}}};
        _ ->
            St
    end.

back_up(#sc{up = false} = Sc) ->
    Sc#sc{up = true, grace = undefined};
back_up(Sc) ->
    Sc.

wanted(#{kind := log, level := L}, #sc{level = Min}) ->
    beamside_logger:level_int(L) >= beamside_logger:level_int(Min);
wanted(#{kind := notification, type := shell_command}, #sc{shell = S}) ->
    S;
wanted(#{kind := notification, type := sysmon}, #sc{sysmon = S}) ->
    S;
wanted(_, _) ->
    true.

%%% ---------------------------------------------------------------------------
%%% system monitor events

sysmon(Who, Event, Info, Time, St) ->
    case take_token(St#s.sys_bucket, St#s.sysmon_rate) of
        {false, B} ->
            count_local(sysmon_rate, St#s{sys_bucket = B});
        {true, B} ->
            Base = #{kind => notification, type => sysmon, level => warning, time => Time,
                     node => node(), event => Event, info => print(Info, 512)},
            E = case Who of
                    P when is_pid(P) ->
                        Proc = case erlang:process_info(P, [registered_name, current_function]) of
                                   [{registered_name, Name}, {current_function, MFA}] ->
                                       #{registered_name => Name,
                                         current_function => beamside_agent:mfa_bin(MFA)};
                                   _ -> #{}
                               end,
                        maps:merge(Base#{pid => beamside_agent:pid_bin(P)},
                                   maps:filter(fun(_, V) -> V =/= [] andalso V =/= <<>> end,
                                               Proc));
                    Port when is_port(Port) ->
                        Base#{port => list_to_binary(erlang:port_to_list(Port))};
                    _ ->
                        Base
                end,
            Text = iolist_to_binary([atom_to_binary(Event, utf8), " ",
                                     maps:get(pid, E, maps:get(port, E, <<>>)), " ",
                                     maps:get(info, E)]),
            buffer(E#{msg => beamside_agent:truncate(Text, 1024)}, St#s{sys_bucket = B})
    end.

print(Term, Max) ->
    Text = try io_lib:format("~0tP", [Term, 20], [{chars_limit, Max}])
           catch _:_ -> "(unprintable)"
           end,
    beamside_agent:truncate(unicode:characters_to_binary(Text), Max).

%%% ---------------------------------------------------------------------------
%%% shell expressions

shells(St) ->
    case any(fun(Sc) -> Sc#sc.shell end, St) of
        false when St#s.monitoring ->
            _ = net_kernel:monitor_nodes(false, [{node_type, all}]),
            St#s{shells = #{}, monitoring = false, scans = []};
        false -> St;
        true ->
            Now = erlang:monotonic_time(millisecond),
            case Now - St#s.last_poll >= cfg(shell_poll_ms, St, 1000, {100, 60000}) - 50 of
                true -> poll_shells(St#s{last_poll = Now}, Now);
                false -> St
            end
    end.

poll_shells(St, Now) ->
    %% At most one remote walk every ?MIN_SCAN_MS, however many nodes connect.
    {Due, Later} = case Now - St#s.last_scan >= ?MIN_SCAN_MS of
                       true -> lists:partition(fun(T) -> T =< Now end, St#s.scans);
                       false -> {[], St#s.scans}
                   end,
    Periodic = case cfg(shell_scan_s, St, 0, {0, 86400}) of
                   0 -> false;
                   S -> Now - St#s.last_scan >= S * 1000
               end,
    Remote = case Due =/= [] orelse Periodic of
                 true -> discover_shells(remote);
                 false -> []
             end,
    Found = lists:usort(discover_shells(local) ++ Remote),
    St1 = case Due =/= [] orelse Periodic of
              true -> St#s{scans = Later, last_scan = Now};
              false -> St
          end,
    Known0 = St1#s.shells,
    %% A shell found after the baseline (monitor_nodes/1) is new: all the
    %% commands it kept are reported.
    Known1 = lists:foldl(fun(P, K) -> K#{P => {0, undefined}} end, Known0,
                         [P || P <- Found, not maps:is_key(P, Known0)]),
    maps:fold(fun poll_shell/3, St1#s{shells = #{}}, Known1).

poll_shell(P, {Last, Reds}, St) ->
    case erlang:process_info(P, reductions) of
        undefined ->
            St;                                 % gone
        {reductions, Reds} ->
            St#s{shells = (St#s.shells)#{P => {Last, Reds}}};
        {reductions, R} ->
            {Cmds, GL} = commands(P, Last),
            St1 = lists:foldl(fun({N, Es}, Acc) -> shell_event(P, GL, N, Es, Acc) end, St, Cmds),
            Last1 = lists:max([Last | [N || {N, _} <- Cmds]]),
            St1#s{shells = (St1#s.shells)#{P => {Last1, R}}}
    end.

max_command(P) ->
    {Cmds, _} = commands(P, 0),
    lists:max([0 | [N || {N, _} <- Cmds]]).

%% {[{N, Exprs}] newer than Last, oldest first, GroupLeader}.
commands(P, Last) ->
    case erlang:process_info(P, [dictionary, group_leader]) of
        [{dictionary, D}, {group_leader, GL}] ->
            {lists:sort([{N, Es} || {{command, N}, Es} <- D, is_integer(N), N > Last]), GL};
        _ ->
            {[], undefined}
    end.

shell_event(P, GL, N, Es, St) ->
    {Text, Cut} = expression(Es),
    ShellNode = case is_pid(GL) of
                    true -> node(GL);
                    false -> node()
                end,
    E0 = #{kind => notification, type => shell_command, level => notice,
           time => os:system_time(nanosecond), node => node(),
           shell => beamside_agent:pid_bin(P), command => N, msg => Text, truncated => Cut,
           shell_node => ShellNode, remote => ShellNode =/= node()},
    E = case is_pid(GL) of
            true -> E0#{group_leader => beamside_agent:pid_bin(GL)};
            false -> E0
        end,
    case take_token(St#s.bucket, cfg(max_rate, St, 2000, {1, 1000000})) of
        {true, B} -> buffer(E, St#s{bucket = B});
        {false, B} -> count_local(rate, St#s{bucket = B})
    end.

expression(Es) ->
    Max = ?EXPR_BYTES,
    Text = try
               case erts_debug:flat_size(Es) > ?EXPR_WORDS of
                   true -> <<"(expression too large)">>;
                   false -> unicode:characters_to_binary(
                              erl_pp:exprs(beamside_redact:redact_exprs(Es)))
               end
           catch _:_ -> print(beamside_redact:redact(Es), Max)
           end,
    Bin = case is_binary(Text) of
              true -> Text;
              false -> print(beamside_redact:redact(Es), Max)
          end,
    Cut = beamside_agent:truncate(Bin, Max),
    {Cut, Cut =/= Bin}.

%% Shell server processes: local (linked to user / user_drv or to the groups
%% linked to them) or remote (group leader on another node: a process walk).
-spec discover_shells(local | remote) -> [pid()].
discover_shells(local) ->
    Roots = [P || N <- [user_drv, user], P <- [whereis(N)], is_pid(P)],
    L1 = lists:usort(lists:append([links(R) || R <- Roots])),
    L2 = lists:append([links(P) || P <- L1, not lists:member(P, Roots)]),
    [P || P <- lists:usort(L1 ++ L2), is_shell_server(P)];
discover_shells(remote) ->
    Me = node(),
    Ps = lists:sublist(erlang:processes(), ?MAX_SCAN),
    [P || P <- Ps,
          case erlang:process_info(P, group_leader) of
              {group_leader, GL} -> node(GL) =/= Me;
              undefined -> false
          end,
          is_shell_server(P)].

links(P) ->
    case erlang:process_info(P, links) of
        {links, L} -> [X || X <- L, is_pid(X), node(X) =:= node()];
        undefined -> []
    end.

is_shell_server(P) ->
    case erlang:process_info(P, current_function) of
        {current_function, {shell, F, _}} when F =/= eval_loop, F =/= eval_exprs,
                                               F =/= do_catch, F =/= evaluator ->
            case erlang:process_info(P, dictionary) of
                {dictionary, D} -> lists:keymember(evaluator, 1, D);
                undefined -> false
            end;
        _ ->
            false
    end.

%%% ---------------------------------------------------------------------------
%%% code events (the `code_events' collect section, run in the collect call)

%% Modules loaded, reloaded, purged and deleted since the previous call by
%% the same sidecar (the caller's group leader's node: rex runs the call with
%% the caller's group leader), compared with a view kept in beamside_sysmon's
%% table.  The first call after attach is a baseline (no events).
%%   #{baseline => boolean(), modules => Count, truncated => Count,
%%     events => [#{type => module_loaded | module_reloaded | module_purged |
%%                  module_deleted, module => atom(), md5 => Hex (current
%%                  code, when there is some)}]}
%% A reload is seen when old code appears for a module or its md5 changes;
%% reloading the same code while old code is already there (a third `c:l'
%% in one interval) is not seen.  beamside's own modules are left out.
-spec code_events(map(), map()) -> map() | not_attached | {error, term()}.
code_events(_Opts, Ctx) ->
    case ets:info(beamside_sysmon, owner) of
        undefined ->
            not_attached;
        _ ->
            Old = case maps:get(old_code, Ctx, undefined) of
                      L when is_list(L) -> L;
                      _ -> beamside_vm:old_code()
                  end,
            OldSet = maps:from_list([{M, true} || M <- Old]),
            View = maps:from_list([{M, module_state(M, OldSet)}
                                   || M <- erlang:loaded(), not ours(M)]),
            Key = {code_view, caller()},
            Prev = beamside_sysmon:view(Key),
            _ = View =:= Prev orelse beamside_sysmon:put_view(Key, View),
            case Prev of
                undefined ->
                    #{baseline => true, modules => map_size(View), truncated => 0, events => []};
                View ->
                    #{baseline => false, modules => map_size(View), truncated => 0, events => []};
                _ ->
                    Events = diff(Prev, View),
                    #{baseline => false, modules => map_size(View),
                      truncated => max(0, length(Events) - ?MAX_CODE_EVENTS),
                      events => lists:sublist(Events, ?MAX_CODE_EVENTS)}
            end
    end.

%%% ---------------------------------------------------------------------------
%%% config events (the `config_events' collect section, run in the collect call)

%% Application environment values set, changed or unset since the previous
%% call by the same sidecar (as code_events/2: per caller, baseline first),
%% for every loaded application:
%%   #{baseline => boolean(), keys => Count, truncated => Count,
%%     events => [#{type => config_changed, app, key,
%%                  old => Text | undefined, new => Text | undefined}]}
%% Values are printed with their secrets redacted (beamside_redact, at any
%% depth: the ssl_options password as well as default_pass); a value whose
%% key itself names a secret is the bare marker <<"<redacted sha256:xxxxxx>">>
%% (its digest changes with the value, so a change of a secret still shows).
%% Values are compared by hash (erlang:phash2/1, cheap for the usual small
%% values); the view kept per sidecar (beamside_sysmon:put_view/2) holds the
%% hash and the redacted printed value (bounded to ?ENV_TEXT_CHARS
%% characters), so a change can show what it was before and the table holds
%% no secret.  A value is printed only when it is new or changed.  At most
%% ?MAX_ENV_KEYS keys are watched, ?MAX_CONFIG_EVENTS events reported a call.
-spec config_events(map(), map()) -> map() | not_attached | {error, term()}.
config_events(_Opts, _Ctx) ->
    case ets:info(beamside_sysmon, owner) of
        undefined ->
            not_attached;
        _ ->
            Key = {config_view, caller()},
            Prev = beamside_sysmon:view(Key),
            Base = case Prev of undefined -> #{}; _ -> Prev end,
            View = maps:map(fun(K, {H, V}) ->
                                    case maps:find(K, Base) of
                                        {ok, {H, _} = Same} -> Same;
                                        _ -> {H, env_text(K, V)}
                                    end
                            end, env_values()),
            _ = View =:= Prev orelse beamside_sysmon:put_view(Key, View),
            case Prev of
                undefined ->
                    #{baseline => true, keys => map_size(View), truncated => 0, events => []};
                _ ->
                    Events = env_diff(Prev, View),
                    #{baseline => false, keys => map_size(View),
                      truncated => max(0, length(Events) - ?MAX_CONFIG_EVENTS),
                      events => lists:sublist(Events, ?MAX_CONFIG_EVENTS)}
            end
    end.

caller() ->
    case group_leader() of
        GL when node(GL) =/= node() -> node(GL);
        _ -> local
    end.

%% #{{App, Key} => {Hash, Value}}: values are not copied, only referenced.
env_values() ->
    Pairs = [{{App, K}, {erlang:phash2(V), V}}
             || {App, _, _} <- application:loaded_applications(),
                {K, V} <- application:get_all_env(App)],
    maps:from_list(lists:sublist(lists:sort(Pairs), ?MAX_ENV_KEYS)).

%% The value printed with its secrets redacted (these texts go to Loki).
env_text({_App, K}, V) ->
    {_, Shown} = beamside_redact:redact({K, V}),
    case beamside_redact:is_marker(Shown) of
        true -> list_to_binary(Shown);
        false -> iolist_to_binary(io_lib:format("~0tp", [Shown],
                                                [{chars_limit, ?ENV_TEXT_CHARS}]))
    end.

env_diff(Prev, Now) ->
    Changed = [config_ev(K, maps:get(K, Prev, undefined), V)
               || {K, V} <- lists:sort(maps:to_list(Now)), maps:get(K, Prev, undefined) =/= V],
    Unset = [config_ev(K, V, undefined)
             || {K, V} <- lists:sort(maps:to_list(Prev)), not maps:is_key(K, Now)],
    Changed ++ Unset.

config_ev({App, K}, Old, New) ->
    #{type => config_changed, app => App, key => K, old => text_of(Old), new => text_of(New)}.

text_of({_Hash, Text}) -> Text;
text_of(undefined) -> undefined.

ours(M) ->
    case atom_to_binary(M, utf8) of
        <<"beamside_", _/binary>> -> true;
        _ -> false
    end.

%% {HasCurrentCode, HasOldCode, Md5 | undefined}: a module with old code
%% only (deleted) has no md5.
module_state(M, OldSet) ->
    Old = maps:is_key(M, OldSet),
    try erlang:get_module_info(M, md5) of
        Md5 -> {true, Old, Md5}
    catch error:_ -> {false, Old, undefined}
    end.

diff(Prev, Now) ->
    Gone = [ev(module_deleted, M, undefined) || {M, {true, _, _}} <- maps:to_list(Prev),
                                                 not maps:is_key(M, Now)]
        ++ [ev(module_purged, M, undefined) || M <- maps:keys(Prev), not maps:is_key(M, Now)],
    Changed = lists:append([module_diff(M, maps:get(M, Prev, absent), S)
                            || {M, S} <- lists:sort(maps:to_list(Now))]),
    Changed ++ lists:sort(Gone).

module_diff(_M, S, S) ->
    [];
module_diff(M, absent, {Cur, Old, Md5}) ->
    [ev(module_loaded, M, Md5) || Cur] ++ [ev(module_reloaded, M, Md5) || Cur, Old]
        ++ [ev(module_deleted, M, undefined) || not Cur];
module_diff(M, {Cur0, Old0, Md50}, {Cur, Old, Md5}) ->
    [ev(module_deleted, M, undefined) || Cur0, not Cur]
        ++ [ev(module_loaded, M, Md5) || not Cur0, Cur]
        ++ [ev(module_purged, M, undefined) || Old0, not Old]
        ++ [ev(module_reloaded, M, Md5)
            || Cur0, Cur, (Old andalso not Old0) orelse Md5 =/= Md50].

ev(Type, M, undefined) -> #{type => Type, module => M};
ev(Type, M, Md5) -> #{type => Type, module => M, md5 => beamside_agent:hex(Md5)}.
