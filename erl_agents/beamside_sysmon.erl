%%% ===========================================================================
%%% beamside_sysmon -- the one long-lived beamside process on a node.
%%% ===========================================================================
%%%
%%% Started by beamside_agent:attach/2 (gen_server, registered as
%%% beamside_sysmon, not linked to anything, not under any supervisor: it
%%% never touches the user's supervision trees).  It lives exactly as long as
%%% a sidecar that attached is connected, or a forwarder keeps events for a
%%% sidecar that went (its grace period, see beamside_events):
%%%
%%%   * erlang:monitor_node/2 on every sidecar node that attached (which must
%%%     be connected: attach never makes a connection attempt); when the last
%%%     one goes down (nodedown), or on stop/0, it stops and terminate/2
%%%     removes everything it installed; except that a nodedown of a sidecar
%%%     that wanted events hands it to the forwarder (sidecar_down/1), and
%%%     while the forwarder runs we stay: when it stops (grace_s over) and
%%%     no sidecar is attached, we stop too.
%%%   * The system monitor (one VM-wide slot), only if erlang:system_monitor()
%%%     is `undefined' at attach; else state `taken_by_other' and the user's
%%%     monitor is left in place.  Events are counted, nothing else (one ETS
%%%     update_counter per event).  If somebody replaces our monitor later,
%%%     the snapshot says `taken_by_other' and terminate leaves theirs alone.
%%%     If this process is killed, the VM clears the monitor by itself.
%%%   * scheduler_wall_time, only with `scheduler_wall_time => true': enabled
%%%     from this process, so the VM disables it again when this process
%%%     exits, however it exits.
%%%   * microstate accounting, only with `msacc => true' and only if it was
%%%     off; turned off again by terminate/2 (NOT if the process is killed:
%%%     then `erlang:system_flag(microstate_accounting, false)' by hand).
%%%   * cpu_sup:util/1 state: cpu_sup measures utilisation per calling
%%%     process, so the sidecar asks through this process (cpu_util/1).
%%%   * The SASL alarm forwarder, when sasl's `alarm_handler' event manager
%%%     runs (at attach, or at the first collect after sasl started or
%%%     restarted: ensure_forwarders/1): beamside_alarm_handler, added as a
%%%     plain handler (the request gen_event:add_handler/3 sends, with a 1 s
%%%     limit instead of `infinity'), id {beamside_alarm_handler, Ref},
%%%     seeded with alarm_handler:get_alarms() (see beamside_alarm_handler).
%%%     Not a supervised handler: that links the manager to this process,
%%%     and gen_event hands a linked process's exit to the handle_info/2 of
%%%     every handler it has (ejabberd's logged `unexpected info' at every
%%%     detach).  The manager is monitored instead; terminate/2 deletes the
%%%     handler (1 s limit) so that it is gone when detach returns; if this
%%%     process is killed, the watchdog deletes it.  If the handler is
%%%     removed by somebody else, it is added again at the next collect.
%%%   * A mnesia system event subscription, when mnesia runs (same rule:
%%%     attach or a later collect): mnesia_subscr:subscribe(self(), system)
%%%     (what mnesia:subscribe(system) does, called from a helper with a 1 s
%%%     limit); mnesia links to this process and drops the subscription when
%%%     it exits; terminate/2 unsubscribes explicitly (1 s limit).  Only
%%%     inconsistent_database and mnesia_overload events are kept: a count,
%%%     and the last one (printed, bounded) with its time.
%%%
%%%   * The log and notification forwarder (beamside_events), when a sidecar
%%%     attaches with event options (see beamside_agent:attach/2): started
%%%     and linked here, given each sidecar's event options (a later attach
%%%     of the same sidecar updates them and ends its grace period), told
%%%     when a sidecar goes (nodedown: sidecar_down/1; detach:
%%%     remove_sidecar/1), and stopped first thing in terminate/2, which removes
%%%     its logger handler and lager backend.  If it fails, it is started
%%%     again a second later while a sidecar still wants events.  With
%%%     `sysmon_events' each system monitor event is also handed to it (it
%%%     rate-limits them).
%%%   * The watchdog (beamside_watchdog, started in init/1, told every
%%%     change of the sidecar set and, last thing in terminate/2, that all
%%%     was released): when this process is gone and none of the sidecars
%%%     is connected any more, it removes whatever is left, the beamside
%%%     modules included, running no beamside code itself.
%%%
%%% Every stop (stop/0 here, of the forwarder in terminate/2) goes through
%%% stop_server/2, which tolerates the process stopping by itself at the
%%% same time (a nodedown racing a detach): a stop that raised inside
%%% terminate/2 was a crash report in the node's log.
%%%
%%% It traps exits: mnesia_subscr and the forwarder link to it, and their
%%% going away (mnesia stopped) must not take it down.
%%%
%%% Its ETS table (named beamside_sysmon, protected: any process may read
%%% it, only this one writes; owned by this process and so gone with it)
%%% holds the counters, its state, the previous scheduler_wall_time sample
%%% used to compute utilisation between collects, the latest result of each
%%% process walk chunk and memory slice (beamside_procs), the alarms set in
%%% alarm_handler (one row each), the mnesia event counters, and the views
%%% the event sections compare with (code_events: module md5s; config_events:
%%% per env key its phash2 and its printed text, REDACTED by beamside_redact:
%%% the table holds no secret).  What other processes store goes through
%%% this process: the collect's writes (swap_sample/2, cached/2,
%%% next_chunk/1, store_chunk/2, next_slice/2, store_slice/3, put_view/2) are
%%% calls (?WRITE_MS; when this process does not answer in time the value is
%%% not stored, as when not attached), beamside_alarm_handler's rows are
%%% messages ({beamside_alarm_handler, Ref, Op}, applied only while Ref is
%%% the installed handler's), and sasl_alarms/1 first makes a call so that
%%% every row the handler sent before is in the table.
%%%
%%% Cost: one process (hibernates when idle), one small table, one message per
%%% system monitor event; the default thresholds (long_gc 100 ms,
%%% long_schedule 100 ms, large_heap 32 Mi words) keep events rare.  One ETS
%%% write per SASL alarm set or cleared, one message per mnesia system event.
%%% ===========================================================================
-module(beamside_sysmon).
-behaviour(gen_server).

-export([start/2, stop/0, snapshot/0, swap_sample/2, cached/2, cpu_util/1]).
-export([chunks_available/0, next_chunk/1, store_chunk/2, chunks/1]).
-export([next_slice/2, store_slice/3, slices/0, put_view/2, view/1]).
-export([ensure_forwarders/1, forwarders/0, sasl_alarms/1, mnesia_events/0]).
-export([sidecars/0, stop_server/2]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(TAB, ?MODULE).
-define(CALL_MS, 1000).             % each call to alarm_handler / mnesia_subscr
-define(RETRY_MS, 60000).           % after a failed installation, wait this long
-define(STOP_MS, 5000).             % a forwarder's terminate; then it is killed
-define(WRITE_MS, 2000).            % a write another process asks of this one

-record(st, {sidecars = [] :: [node()],
             sysmon = disabled :: owner | taken_by_other | disabled,
             swt = false :: boolean(),
             msacc = false :: boolean(),
             cpu_primed = false :: boolean(),
             %% {Manager, Ref} of the installed alarm forwarder.
             ah = undefined :: undefined | {pid(), reference()},
             ah_mon = undefined :: undefined | reference(),
             ah_failed = undefined :: undefined | {pid(), integer()},
             %% mnesia_subscr we are subscribed to.
             mnesia = undefined :: undefined | pid(),
             %% event options of each sidecar that asked for events, and the
             %% forwarder (beamside_events) serving them.
             ev_opts = #{} :: #{node() => map()},
             events = undefined :: undefined | pid(),
             %% forward each system monitor event (some sidecar asked)
             sysmon_events = false :: boolean(),
             %% the node-side watchdog (beamside_watchdog)
             watchdog = undefined :: undefined | pid()}).

%%% ---------------------------------------------------------------------------
%%% API

-spec start(node(), map()) -> {ok, pid()} | {error, term()}.
start(Sidecar, Opts) ->
    case whereis(?MODULE) of
        undefined ->
            case gen_server:start({local, ?MODULE}, ?MODULE, {Sidecar, Opts},
                                  [{timeout, 5000}, {hibernate_after, 15000}]) of
                {ok, Pid} -> {ok, Pid};
                {error, {already_started, Pid}} -> add(Pid, Sidecar, Opts);
                {error, _} = E -> E;
                ignore -> {error, ignore}
            end;
        Pid ->
            add(Pid, Sidecar, Opts)
    end.

add(Pid, Sidecar, Opts) ->
    case gen_server:call(Pid, {add_sidecar, Sidecar, Opts}, 10000) of
        ok -> {ok, Pid};
        {error, _} = E -> E
    end.

-spec stop() -> ok.
stop() ->
    stop_server(?MODULE, 2 * ?STOP_MS).

%% Stop a gen_server with reason normal and wait until it is gone, whatever
%% races with it: it may be gone already, or stop by itself meanwhile (a
%% nodedown, its parent exiting), in which case sys:terminate exits with
%% {normal, {sys, terminate, _}} or noproc: caught, never raised into the
%% caller (a terminate/2 that raised would be a crash report in the node's
%% log).  Killed if it has not exited after Timeout.
-spec stop_server(atom() | pid(), timeout()) -> ok.
stop_server(Name, Timeout) when is_atom(Name) ->
    case whereis(Name) of
        undefined -> ok;
        Pid -> stop_server(Pid, Timeout)
    end;
stop_server(Pid, Timeout) when is_pid(Pid) ->
    MRef = erlang:monitor(process, Pid),
    _ = (catch sys:terminate(Pid, normal, Timeout)),
    receive
        {'DOWN', MRef, process, Pid, _} -> ok
    after Timeout ->
            exit(Pid, kill),
            receive {'DOWN', MRef, process, Pid, _} -> ok
            after 1000 -> ok
            end
    end.

%% The sidecar nodes beamside_sysmon watches ([] when not attached).
-spec sidecars() -> [node()].
sidecars() ->
    try ets:lookup(?TAB, sidecars) of
        [{sidecars, Ns}] -> Ns;
        [] -> []
    catch error:badarg -> []
    end.

%% The snapshot's `sysmon' section.
-spec snapshot() -> map().
snapshot() ->
    case ets:info(?TAB, owner) of
        undefined ->
            #{state => not_attached};
        Owner ->
            [{counters, LongGc, LongSched, LargeHeap, BusyPort, BusyDist}] =
                ets:lookup(?TAB, counters),
            [{meta, Held, SinceMs, Sidecars, Swt, Msacc}] = ets:lookup(?TAB, meta),
            State = case Held of
                        owner ->
                            case erlang:system_monitor() of
                                {Owner, _} -> owner;
                                _ -> taken_by_other
                            end;
                        Other ->
                            Other
                    end,
            [{alarm_handler, _, _, AlarmHandler}] = ets:lookup(?TAB, alarm_handler),
            MnesiaSubscr = ets:lookup_element(?TAB, mnesia_events, 2),
            #{state => State,
              long_gc => LongGc, long_schedule => LongSched, large_heap => LargeHeap,
              busy_port => BusyPort, busy_dist_port => BusyDist,
              attached_ms => erlang:monotonic_time(millisecond) - SinceMs,
              sidecars => Sidecars,
              scheduler_wall_time => Swt,
              msacc => Msacc,
              alarm_handler => AlarmHandler,
              mnesia_subscribed => is_pid(MnesiaSubscr)}
    end.

%% Store Value under Key in our table and return what was there (undefined
%% when not attached or nothing was stored).
-spec swap_sample(atom(), term()) -> term().
swap_sample(Key, Value) ->
    write({sample, Key, Value}, undefined).

%% Fun() computed once per attach and kept in our table (computed at every
%% call when not attached).
-spec cached(term(), fun(() -> T)) -> T.
cached(Key, Fun) ->
    try ets:lookup(?TAB, {cached, Key}) of
        [{_, V}] -> V;
        [] -> V = Fun(), _ = write({cached, Key, V}, ok), V
    catch error:badarg -> Fun()
    end.

%% Process walk chunks (see beamside_procs): which chunk to walk next, the
%% latest result of each.  Nothing when not attached.
-spec chunks_available() -> boolean().
chunks_available() ->
    ets:info(?TAB, owner) =/= undefined.

-spec next_chunk(pos_integer()) -> non_neg_integer().
next_chunk(K) ->
    write({counter, walk_next}, 0) rem K.

-spec store_chunk(non_neg_integer(), map()) -> ok.
store_chunk(I, Result) ->
    write({chunk, I, erlang:monotonic_time(millisecond), Result}, ok).

%% [{I, AgeMs, Result}] for the chunks 0..K-1 that have a result.
-spec chunks(pos_integer()) -> [{non_neg_integer(), non_neg_integer(), map()}].
chunks(K) ->
    Now = erlang:monotonic_time(millisecond),
    try [{I, Now - T, R} || I <- lists:seq(0, K - 1),
                            {_, T, R} <- ets:lookup(?TAB, {walk_chunk, I})]
    catch error:badarg -> []
    end.

%% Memory slices of the walk (see beamside_procs): slice J of L within chunk
%% I, the next one at every visit of chunk I.
-spec next_slice(non_neg_integer(), pos_integer()) -> non_neg_integer().
next_slice(I, L) ->
    write({counter, {slice_next, I}}, 0) rem L.

%% Geometry {K, L}: when it changes (the process count crossed a chunk or
%% slice boundary, or a call asked for another walk_chunk / memory_chunk),
%% the results of the previous geometry are dropped: they cover other ranges.
-spec store_slice({pos_integer(), pos_integer()}, {non_neg_integer(), non_neg_integer()},
                  map()) -> ok.
store_slice(Geometry, {I, J}, Result) ->
    write({slice, Geometry, {I, J}, erlang:monotonic_time(millisecond), Result}, ok).

%% [{AgeMs, Result}] of the slices that have a result (all of the current
%% geometry: store_slice/3 dropped the others).
-spec slices() -> [{non_neg_integer(), map()}].
slices() ->
    Now = erlang:monotonic_time(millisecond),
    try [{Now - T, R} || {T, R} <- ets:select(?TAB, [{{{slice, '_', '_'}, '$1', '$2'}, [],
                                                    [{{'$1', '$2'}}]}])]
    catch error:badarg -> []
    end.

%% The views the event sections compare with (beamside_events: {code_view,
%% Caller}, {config_view, Caller}; beamside_alarms: old_code_seen): stored
%% by this process, read by anyone (undefined when none or not attached).
-spec put_view(term(), term()) -> ok.
put_view(Key, View) ->
    write({view, Key, View}, ok).

-spec view(term()) -> term().
view(Key) ->
    try ets:lookup(?TAB, {view, Key}) of
        [{_, V}] -> V;
        [] -> undefined
    catch error:badarg -> undefined
    end.

%% A write into our table, done by this process (the table is protected);
%% Default when not attached or when this process does not answer in time.
write(Req, Default) ->
    case whereis(?MODULE) of
        undefined ->
            Default;
        Self when Self =:= self() ->
            try do_write(Req) catch error:_ -> Default end;
        Pid ->
            try gen_server:call(Pid, {write, Req}, ?WRITE_MS) of
                {ok, R} -> R;
                _ -> Default
            catch exit:_ -> Default
            end
    end.

do_write({sample, Key, Value}) ->
    Prev = case ets:lookup(?TAB, {sample, Key}) of
               [{_, P}] -> P;
               [] -> undefined
           end,
    ets:insert(?TAB, {{sample, Key}, Value}),
    Prev;
do_write({cached, Key, Value}) ->
    ets:insert(?TAB, {{cached, Key}, Value}),
    ok;
do_write({counter, Key}) when Key =:= walk_next; element(1, Key) =:= slice_next ->
    ets:update_counter(?TAB, Key, {2, 1}, {Key, -1});
do_write({chunk, I, At, Result}) ->
    ets:insert(?TAB, {{walk_chunk, I}, At, Result}),
    ok;
do_write({slice, Geometry, {I, J}, At, Result}) ->
    case ets:lookup(?TAB, slice_geometry) of
        [{_, Geometry}] -> ok;
        _ -> ets:match_delete(?TAB, {{slice, '_', '_'}, '_', '_'}),
             ets:insert(?TAB, {slice_geometry, Geometry})
    end,
    ets:insert(?TAB, {{slice, I, J}, At, Result}),
    ok;
do_write({view, Key, View}) when Key =:= old_code_seen; element(1, Key) =:= code_view;
                                 element(1, Key) =:= config_view ->
    ets:insert(?TAB, {{view, Key}, View}),
    ok;
do_write(sync) ->
    ok.

%% Install the alarm forwarder / mnesia subscription if their application
%% runs and they are not there yet (a no-op call otherwise).
-spec ensure_forwarders(timeout()) -> ok | {error, term()}.
ensure_forwarders(Timeout) ->
    try gen_server:call(?MODULE, ensure_forwarders, Timeout)
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, not_attached};
          exit:{normal, _} -> {error, not_attached}
    end.

%% What the forwarders are attached to, from the table (no call):
%% {AlarmManager | undefined, Status, MnesiaSubscr | undefined}, or
%% not_attached.
-spec forwarders() -> {pid() | undefined, term(), pid() | undefined} | not_attached.
forwarders() ->
    try
        [{alarm_handler, AH, _Ref, Status}] = ets:lookup(?TAB, alarm_handler),
        Subscr = ets:lookup_element(?TAB, mnesia_events, 2),
        {AH, Status, Subscr}
    catch error:_ -> not_attached
    end.

%% {Count, [{IdText, DescText, NameText, SetAtMs}]} (at most Max).
-spec sasl_alarms(non_neg_integer()) -> {non_neg_integer(), [tuple()]}.
sasl_alarms(Max) ->
    %% The rows beamside_alarm_handler sent before this call are stored when
    %% this process answers (an alarm set just before a collect is in it).
    _ = write(sync, ok),
    Pattern = {{sasl_alarm, '_'}, '$1', '$2', '$3', '$4'},
    Count = ets:select_count(?TAB, [{Pattern, [], [true]}]),
    Rows = case Max > 0 andalso ets:select(?TAB, [{Pattern, [], [{{'$1', '$2', '$3', '$4'}}]}],
                                           Max) of
               {L, _Cont} -> L;
               _ -> []
           end,
    {Count, lists:sort(Rows)}.

%% The mnesia event counters: {InconsistentCount, LastInconsistent,
%% OverloadCount, LastOverload} (last ones: map() | none).
-spec mnesia_events() -> {non_neg_integer(), map() | none, non_neg_integer(), map() | none}.
mnesia_events() ->
    [{mnesia_events, _Subscr, IC, IL, OC, OL}] = ets:lookup(?TAB, mnesia_events),
    {IC, IL, OC, OL}.

%% cpu_sup:util([detailed]) as seen from this process (since the previous
%% call): #{busy, user, nice_user, kernel, wait, idle, ...} in percent, or
%% undefined (not attached, os_mon/cpu_sup not running, or first call).
-spec cpu_util(timeout()) -> map() | undefined | {error, term()}.
cpu_util(Timeout) ->
    case whereis(?MODULE) of
        undefined -> undefined;
        Pid ->
            try gen_server:call(Pid, cpu_util, Timeout)
            catch exit:{timeout, _} -> {error, timeout};
                  exit:{noproc, _} -> undefined
            end
    end.

%%% ---------------------------------------------------------------------------
%%% gen_server

init({Sidecar, Opts}) ->
    case whereis(user) of
        undefined -> ok;
        User -> group_leader(User, self())
    end,
    _ = process_flag(message_queue_data, off_heap),
    _ = process_flag(trap_exit, true),
    case lists:member(Sidecar, erlang:nodes(connected)) of
        false ->
            {stop, {not_connected, Sidecar}};
        true ->
            true = erlang:monitor_node(Sidecar, true),
            ?TAB = ets:new(?TAB, [named_table, protected, set, {read_concurrency, true}]),
            ets:insert(?TAB, {counters, 0, 0, 0, 0, 0}),
            ets:insert(?TAB, {alarm_handler, undefined, undefined, not_running}),
            ets:insert(?TAB, {mnesia_events, undefined, 0, none, 0, none}),
            Sysmon = take_sysmon(Opts),
            Swt = case maps:get(scheduler_wall_time, Opts, false) of
                      true -> _ = erlang:system_flag(scheduler_wall_time, true), true;
                      _ -> false
                  end,
            Msacc = case maps:get(msacc, Opts, false) of
                        true -> not erlang:system_flag(microstate_accounting, true);
                        _ -> false
                    end,
            Watchdog = case beamside_watchdog:start([Sidecar], Msacc) of
                           {ok, W} -> W;
                           {error, _} -> undefined
                       end,
            St0 = #st{sidecars = [Sidecar], sysmon = Sysmon, swt = Swt, msacc = Msacc,
                      watchdog = Watchdog},
            St = events_opts(Sidecar, Opts, St0),
            meta(St),
            self() ! prime_cpu,
            self() ! ensure_forwarders,
            {ok, St}
    end.

handle_call({add_sidecar, Node, Opts}, _From, #st{sidecars = Ns} = St) ->
    case lists:member(Node, Ns) of
        true ->
            %% A second attach: its event options replace the previous ones.
            {reply, ok, events_opts(Node, Opts, St)};
        false ->
            case lists:member(Node, erlang:nodes(connected)) of
                true ->
                    true = erlang:monitor_node(Node, true),
                    St1 = events_opts(Node, Opts, St#st{sidecars = [Node | Ns]}),
                    meta(St1),
                    {reply, ok, St1};
                false ->
                    {reply, {error, {not_connected, Node}}, St}
            end
    end;
handle_call(cpu_util, _From, St) ->
    case whereis(cpu_sup) of
        undefined ->
            {reply, undefined, St#st{cpu_primed = false}};
        _ when not St#st.cpu_primed ->
            _ = catch cpu_sup:util([detailed]),
            {reply, undefined, St#st{cpu_primed = true}};
        _ ->
            {reply, read_cpu(), St}
    end;
handle_call(ensure_forwarders, _From, St) ->
    {reply, ok, ensure_watchdog(ensure_events(ensure_mnesia(ensure_alarm_handler(St))))};
handle_call({write, Req}, _From, St) ->
    {reply, try {ok, do_write(Req)} catch error:_ -> failed end, St};
handle_call(_Other, _From, St) ->
    {reply, {error, unknown_call}, St}.

handle_cast(_Msg, St) ->
    {noreply, St}.

handle_info({monitor, Who, Event, Info}, St) ->
    case pos(Event) of
        0 -> ok;
        Pos -> _ = ets:update_counter(?TAB, counters, {Pos, 1})
    end,
    case St#st.sysmon_events of
        true -> beamside_events:sysmon_event(Who, Event, Info);
        false -> ok
    end,
    {noreply, St};
handle_info({nodedown, Node}, #st{sidecars = Ns} = St) ->
    %% A sidecar that wanted events: the forwarder keeps its events for the
    %% grace period (beamside_events), and we stay as long as it runs.
    case maps:is_key(Node, St#st.ev_opts) andalso is_pid(St#st.events) of
        true -> beamside_events:sidecar_down(Node);
        false -> beamside_events:remove_sidecar(Node)
    end,
    case lists:delete(Node, Ns) of
        [] when not is_pid(St#st.events) ->
            {stop, normal, St#st{sidecars = []}};
        Left ->
            Ev = maps:remove(Node, St#st.ev_opts),
            St1 = St#st{sidecars = Left, ev_opts = Ev, sysmon_events = sysmon_events(Ev)},
            meta(St1),
            {noreply, St1}
    end;
handle_info({mnesia_system_event, Event}, St) ->
    mnesia_event(Event),
    {noreply, St};
handle_info(ensure_forwarders, St) ->
    {noreply, ensure_events(ensure_mnesia(ensure_alarm_handler(St)))};
handle_info({'EXIT', Pid, Why}, #st{events = Pid} = St) ->
    %% The forwarder stopped: normally when no sidecar wants events any
    %% more; if it failed, start it again in a second (and at the next
    %% ensure_forwarders) while a sidecar still wants events.
    case {Why, St#st.sidecars} of
        {_, []} -> {stop, normal, St#st{events = undefined}};   % the grace period ended
        {normal, _} -> {noreply, St#st{events = undefined}};
        _ -> erlang:send_after(1000, self(), ensure_events),
             {noreply, St#st{events = undefined}}
    end;
handle_info(ensure_events, St) ->
    {noreply, ensure_events(St)};
handle_info({'DOWN', MRef, process, _, _}, #st{ah_mon = MRef} = St) ->
    %% alarm_handler stopped (sasl stopped or restarted): the next collect
    %% adds the handler to the new one.
    {noreply, forget_alarm_handler(not_running, St)};
handle_info({'EXIT', Pid, _Why}, #st{mnesia = Pid} = St) ->
    ets:update_element(?TAB, mnesia_events, {2, undefined}),
    {noreply, St#st{mnesia = undefined}};
handle_info(prime_cpu, St) ->
    case whereis(cpu_sup) of
        undefined ->
            {noreply, St};
        _ ->
            _ = catch cpu_sup:util([detailed]),
            {noreply, St#st{cpu_primed = true}}
    end;
handle_info({beamside_alarm_handler, Ref, Op}, St) ->
    %% A row of the alarm forwarder: applied only while Ref is the handler
    %% installed last (a stale one's rows are dropped).
    case ets:lookup(?TAB, alarm_handler) of
        [{alarm_handler, _, Ref, _}] when Ref =/= undefined -> alarm_row(Op);
        _ -> ok
    end,
    {noreply, St};
handle_info(_Other, St) ->
    {noreply, St}.

terminate(_Reason, St) ->
    %% First the log handlers, so that nothing logged while we clean up is
    %% handed to a forwarder that is going away.
    case St#st.events of
        undefined -> ok;
        Events -> stop_server(Events, ?STOP_MS)
    end,
    case erlang:system_monitor() of
        {Self, _} when Self =:= self() -> _ = erlang:system_monitor(undefined);
        _ -> ok
    end,
    case St#st.swt of
        true -> _ = erlang:system_flag(scheduler_wall_time, false);
        false -> ok
    end,
    case St#st.msacc of
        true -> _ = erlang:system_flag(microstate_accounting, false);
        false -> ok
    end,
    [erlang:monitor_node(N, false) || N <- St#st.sidecars],
    Me = self(),
    case St#st.ah of
        {AH, Ref} ->
            _ = beamside_agent:run_bounded(
                  fun() -> gen_event:delete_handler(AH, {beamside_alarm_handler, Ref}, remove) end,
                  ?CALL_MS, []);
        undefined ->
            ok
    end,
    case St#st.mnesia of
        undefined ->
            ok;
        _ ->
            _ = beamside_agent:run_bounded(
                  fun() -> mnesia_subscr:unsubscribe(Me, system) end, ?CALL_MS, [])
    end,
    beamside_watchdog:released(St#st.watchdog).

%%% ---------------------------------------------------------------------------

take_sysmon(Opts) ->
    case maps:get(system_monitor, Opts, true) of
        true ->
            case erlang:system_monitor() of
                undefined ->
                    _ = erlang:system_monitor(self(), sysmon_spec(Opts)),
                    owner;
                {Self, _} when Self =:= self() ->
                    owner;
                _ ->
                    taken_by_other
            end;
        _ ->
            disabled
    end.

sysmon_spec(Opts) ->
    Int = fun(K, D) -> beamside_agent:int_opt(K, Opts, D, {1, 1 bsl 40}) end,
    Bool = fun(K) -> maps:get(K, Opts, true) =:= true end,
    [{long_gc, Int(long_gc, 100)},
     {long_schedule, Int(long_schedule, 100)},
     {large_heap, Int(large_heap, 32 * 1024 * 1024)}]
        ++ [busy_port || Bool(busy_port)]
        ++ [busy_dist_port || Bool(busy_dist_port)].

pos(long_gc) -> 2;
pos(long_schedule) -> 3;
pos(large_heap) -> 4;
pos(busy_port) -> 5;
pos(busy_dist_port) -> 6;
pos(_) -> 0.

meta(#st{sidecars = Ns, sysmon = Sysmon, swt = Swt, msacc = Msacc, watchdog = W}) ->
    Since = case ets:lookup(?TAB, meta) of
                [{meta, _, S, _, _, _}] -> S;
                [] -> erlang:monotonic_time(millisecond)
            end,
    beamside_watchdog:sidecars(W, Ns),
    ets:insert(?TAB, [{meta, Sysmon, Since, length(Ns), Swt, Msacc}, {sidecars, Ns}]).

%% The watchdog is there as long as we are (started again should it die).
ensure_watchdog(#st{watchdog = W} = St) when is_pid(W) ->
    case is_process_alive(W) of
        true -> St;
        false -> ensure_watchdog(St#st{watchdog = undefined})
    end;
ensure_watchdog(#st{sidecars = Ns, msacc = Msacc} = St) ->
    case beamside_watchdog:start(Ns, Msacc) of
        {ok, W} -> St#st{watchdog = W};
        {error, _} -> St
    end.

read_cpu() ->
    try cpu_sup:util([detailed]) of
        {_Cpus, Busy, NonBusy, _Misc} when is_list(Busy), is_list(NonBusy) ->
            M = maps:from_list([{K, V} || {K, V} <- Busy ++ NonBusy, is_number(V)]),
            M#{busy => lists:sum([V || {_, V} <- Busy, is_number(V)])};
        Other ->
            {error, beamside_agent:reason(Other)}
    catch C:R ->
            {error, {C, beamside_agent:reason(R)}}
    end.

%%% ---------------------------------------------------------------------------
%%% log and notification forwarder (beamside_events)

%% Remember a sidecar's event options (an attach without any leaves it out
%% of the event stream) and bring the forwarder in line.
events_opts(Node, Opts, St) ->
    Ev = case beamside_events:wants_events(Opts) of
             true -> (St#st.ev_opts)#{Node => Opts};
             false -> maps:remove(Node, St#st.ev_opts)
         end,
    St1 = St#st{ev_opts = Ev, sysmon_events = sysmon_events(Ev)},
    case {maps:is_key(Node, Ev), St1#st.events} of
        {false, undefined} -> St1;
        {false, _} -> beamside_events:remove_sidecar(Node), St1;
        {true, _} -> configure_events(Node, Opts, start_events(St1))
    end.

sysmon_events(Ev) ->
    lists:any(fun(O) -> maps:get(sysmon_events, O, false) =:= true end, maps:values(Ev)).

start_events(#st{events = undefined} = St) ->
    case beamside_events:start_link() of
        {ok, Pid} -> St#st{events = Pid};
        {error, {already_started, Pid}} -> link(Pid), St#st{events = Pid};
        {error, _} -> St
    end;
start_events(St) ->
    St.

configure_events(_Node, _Opts, #st{events = undefined} = St) ->
    St;
configure_events(Node, Opts, St) ->
    _ = beamside_events:configure(Node, Opts),
    St.

%% Restart the forwarder if it stopped while sidecars still want events.
ensure_events(#st{events = undefined, ev_opts = Ev} = St) when map_size(Ev) > 0 ->
    St1 = start_events(St),
    maps:fold(fun(Node, Opts, Acc) -> configure_events(Node, Opts, Acc) end, St1, Ev);
ensure_events(St) ->
    St.

%%% ---------------------------------------------------------------------------
%%% SASL alarm_handler forwarder

ensure_alarm_handler(#st{ah = Cur, ah_failed = Failed} = St) ->
    case {whereis(alarm_handler), Cur} of
        {undefined, undefined} ->
            St;
        {undefined, _} ->
            forget_alarm_handler(not_running, St);
        {AH, {AH, _}} ->
            %% beamside_alarm_handler:terminate/2 marks it removed (deleted
            %% by somebody else, or crashed): add it again.
            case ets:lookup_element(?TAB, alarm_handler, 4) of
                removed -> install_alarm_handler(AH, forget_alarm_handler(not_running, St));
                _ -> St
            end;
        {AH, _} ->
            Now = erlang:monotonic_time(millisecond),
            case Failed of
                {AH, At} when Now - At < ?RETRY_MS -> St;
                _ -> install_alarm_handler(AH, forget_alarm_handler(not_running, St))
            end
    end.

install_alarm_handler(AH, St) ->
    Ref = make_ref(),
    Handler = {beamside_alarm_handler, Ref},
    ets:insert(?TAB, {alarm_handler, AH, Ref, pending}),
    %% gen_event:add_handler(AH, Handler, Args) is this request with an
    %% infinite time-out.  A plain handler, not a supervised one: a
    %% supervised handler links the manager to us, and the manager hands
    %% our exit ({'EXIT', Pid, Reason}) to the handle_info/2 of EVERY
    %% handler it has (ejabberd's, the user's).  We delete it ourselves on
    %% every way out (terminate/2; the watchdog if we are killed), and it
    %% removes itself at its next event when our table is gone.
    Request = {add_handler, Handler, {?TAB, Ref}},
    case catch gen:call(AH, self(), Request, ?CALL_MS) of
        {ok, ok} ->
            Alarms = case catch gen_event:call(AH, alarm_handler, get_alarms, ?CALL_MS) of
                         L when is_list(L) -> L;
                         _ -> []                % the default handler was replaced
                     end,
            _ = (catch gen_event:call(AH, Handler, {seed, Alarms}, ?CALL_MS)),
            ets:insert(?TAB, {alarm_handler, AH, Ref, installed}),
            St#st{ah = {AH, Ref}, ah_mon = erlang:monitor(process, AH), ah_failed = undefined};
        Other ->
            Why = case Other of
                      {'EXIT', {R, _}} -> R;
                      {'EXIT', R} -> R;
                      {ok, R} -> R;
                      R -> R
                  end,
            %% No Ref in the table: should the manager still add the handler
            %% later, it removes itself at its first event.
            ets:insert(?TAB, {alarm_handler, AH, undefined, {error, beamside_agent:reason(Why)}}),
            St#st{ah_failed = {AH, erlang:monotonic_time(millisecond)}}
    end.

alarm_row({insert, {{sasl_alarm, _}, _, _, _, _} = Row}) -> ets:insert(?TAB, Row);
alarm_row({delete, Id}) -> ets:delete(?TAB, {sasl_alarm, Id});
alarm_row(removed) -> ets:update_element(?TAB, alarm_handler, {4, removed});
alarm_row(_) -> ok.

forget_alarm_handler(Status, St) ->
    case St#st.ah_mon of
        undefined -> ok;
        MRef -> erlang:demonitor(MRef, [flush])
    end,
    ets:match_delete(?TAB, {{sasl_alarm, '_'}, '_', '_', '_', '_'}),
    ets:insert(?TAB, {alarm_handler, undefined, undefined, Status}),
    St#st{ah = undefined, ah_mon = undefined}.

%%% ---------------------------------------------------------------------------
%%% mnesia system events

ensure_mnesia(#st{mnesia = Cur} = St) ->
    case whereis(mnesia_subscr) of
        undefined when Cur =:= undefined ->
            St;
        undefined ->
            ets:update_element(?TAB, mnesia_events, {2, undefined}),
            St#st{mnesia = undefined};
        Cur ->
            St;
        MS ->
            Self = self(),
            Subscribe = fun() ->
                                case mnesia:system_info(is_running) of
                                    yes -> mnesia_subscr:subscribe(Self, system);
                                    Other -> {error, Other}
                                end
                        end,
            case beamside_agent:run_bounded(Subscribe, ?CALL_MS, []) of
                {ok, {ok, _}} -> subscribed(MS, St);
                {ok, {error, {already_exists, _}}} -> subscribed(MS, St);
                _ -> St                                 % not running yet: next collect
            end
    end.

subscribed(MS, St) ->
    ets:update_element(?TAB, mnesia_events, {2, MS}),
    St#st{mnesia = MS}.

mnesia_event({inconsistent_database, Context, Node}) ->
    Last = #{context => beamside_alarm_handler:print(Context),
             node => beamside_alarm_handler:print(Node),
             at_ms => erlang:system_time(millisecond)},
    _ = ets:update_counter(?TAB, mnesia_events, {3, 1}),
    ets:update_element(?TAB, mnesia_events, {4, Last});
mnesia_event({mnesia_overload, Details}) ->
    Last = #{details => beamside_alarm_handler:print(Details),
             at_ms => erlang:system_time(millisecond)},
    _ = ets:update_counter(?TAB, mnesia_events, {5, 1}),
    ets:update_element(?TAB, mnesia_events, {6, Last});
mnesia_event(_) ->
    true.
