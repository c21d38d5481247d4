%%% ===========================================================================
%%% beamside_sysmon -- the one long-lived beamside process on a node.
%%% ===========================================================================
%%%
%%% Started by beamside_agent:attach/2 (gen_server, registered as
%%% beamside_sysmon, not linked to anything, not under any supervisor: it
%%% never touches the user's supervision trees).  It lives exactly as long as
%%% a sidecar that attached is connected:
%%%
%%%   * erlang:monitor_node/2 on every sidecar node that attached (which must
%%%     be connected: attach never makes a connection attempt); when the last
%%%     one goes down (nodedown), or on stop/0, it stops and terminate/2
%%%     removes everything it installed.
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
%%%
%%% Its ETS table (named beamside_sysmon, public, owned by this process and
%%% so gone with it) holds the counters, its state, the previous
%%% scheduler_wall_time sample used to compute utilisation between collects
%%% and the latest result of each process walk chunk (beamside_procs).
%%%
%%% Cost: one process (hibernates when idle), one small table, one message per
%%% system monitor event; the default thresholds (long_gc 100 ms,
%%% long_schedule 100 ms, large_heap 32 Mi words) keep events rare.
%%% ===========================================================================
-module(beamside_sysmon).
-behaviour(gen_server).

-export([start/2, stop/0, snapshot/0, swap_sample/2, cpu_util/1]).
-export([chunks_available/0, next_chunk/1, store_chunk/2, chunks/1]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2]).

-define(TAB, ?MODULE).

-record(st, {sidecars = [] :: [node()],
             sysmon = disabled :: owner | taken_by_other | disabled,
             swt = false :: boolean(),
             msacc = false :: boolean(),
             cpu_primed = false :: boolean()}).

%%% ---------------------------------------------------------------------------
%%% API

-spec start(node(), map()) -> {ok, pid()} | {error, term()}.
start(Sidecar, Opts) ->
    case whereis(?MODULE) of
        undefined ->
            case gen_server:start({local, ?MODULE}, ?MODULE, {Sidecar, Opts},
                                  [{timeout, 5000}, {hibernate_after, 15000}]) of
                {ok, Pid} -> {ok, Pid};
                {error, {already_started, Pid}} -> add(Pid, Sidecar);
                {error, _} = E -> E;
                ignore -> {error, ignore}
            end;
        Pid ->
            add(Pid, Sidecar)
    end.

add(Pid, Sidecar) ->
    case gen_server:call(Pid, {add_sidecar, Sidecar}, 5000) of
        ok -> {ok, Pid};
        {error, _} = E -> E
    end.

-spec stop() -> ok.
stop() ->
    try gen_server:stop(?MODULE, normal, 5000)
    catch exit:noproc -> ok;
          exit:normal -> ok
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
            #{state => State,
              long_gc => LongGc, long_schedule => LongSched, large_heap => LargeHeap,
              busy_port => BusyPort, busy_dist_port => BusyDist,
              attached_ms => erlang:monotonic_time(millisecond) - SinceMs,
              sidecars => Sidecars,
              scheduler_wall_time => Swt,
              msacc => Msacc}
    end.

%% Store Value under Key in our table and return what was there (undefined
%% when not attached or nothing was stored).
-spec swap_sample(atom(), term()) -> term().
swap_sample(Key, Value) ->
    try ets:lookup(?TAB, {sample, Key}) of
        Prev ->
            ets:insert(?TAB, {{sample, Key}, Value}),
            case Prev of
                [{_, P}] -> P;
                [] -> undefined
            end
    catch error:badarg -> undefined
    end.

%% Process walk chunks (see beamside_procs): which chunk to walk next, the
%% latest result of each.  Nothing when not attached.
-spec chunks_available() -> boolean().
chunks_available() ->
    ets:info(?TAB, owner) =/= undefined.

-spec next_chunk(pos_integer()) -> non_neg_integer().
next_chunk(K) ->
    try ets:update_counter(?TAB, walk_next, {2, 1}, {walk_next, -1}) rem K
    catch error:badarg -> 0
    end.

-spec store_chunk(non_neg_integer(), map()) -> ok.
store_chunk(I, Result) ->
    try ets:insert(?TAB, {{walk_chunk, I}, erlang:monotonic_time(millisecond), Result}), ok
    catch error:badarg -> ok
    end.

%% [{I, AgeMs, Result}] for the chunks 0..K-1 that have a result.
-spec chunks(pos_integer()) -> [{non_neg_integer(), non_neg_integer(), map()}].
chunks(K) ->
    Now = erlang:monotonic_time(millisecond),
    try [{I, Now - T, R} || I <- lists:seq(0, K - 1),
                            {_, T, R} <- ets:lookup(?TAB, {walk_chunk, I})]
    catch error:badarg -> []
    end.

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
    case lists:member(Sidecar, erlang:nodes(connected)) of
        false ->
            {stop, {not_connected, Sidecar}};
        true ->
            true = erlang:monitor_node(Sidecar, true),
            ?TAB = ets:new(?TAB, [named_table, public, set, {read_concurrency, true}]),
            ets:insert(?TAB, {counters, 0, 0, 0, 0, 0}),
            Sysmon = take_sysmon(Opts),
            Swt = case maps:get(scheduler_wall_time, Opts, false) of
                      true -> _ = erlang:system_flag(scheduler_wall_time, true), true;
                      _ -> false
                  end,
            Msacc = case maps:get(msacc, Opts, false) of
                        true -> not erlang:system_flag(microstate_accounting, true);
                        _ -> false
                    end,
            St = #st{sidecars = [Sidecar], sysmon = Sysmon, swt = Swt, msacc = Msacc},
            meta(St),
            self() ! prime_cpu,
            {ok, St}
    end.

handle_call({add_sidecar, Node}, _From, #st{sidecars = Ns} = St) ->
    case lists:member(Node, Ns) of
        true ->
            {reply, ok, St};
        false ->
            case lists:member(Node, erlang:nodes(connected)) of
                true ->
                    true = erlang:monitor_node(Node, true),
                    St1 = St#st{sidecars = [Node | Ns]},
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
handle_call(_Other, _From, St) ->
    {reply, {error, unknown_call}, St}.

handle_cast(_Msg, St) ->
    {noreply, St}.

handle_info({monitor, _Who, Event, _Info}, St) ->
    case pos(Event) of
        0 -> ok;
        Pos -> _ = ets:update_counter(?TAB, counters, {Pos, 1})
    end,
    {noreply, St};
handle_info({nodedown, Node}, #st{sidecars = Ns} = St) ->
    case lists:delete(Node, Ns) of
        [] ->
            {stop, normal, St#st{sidecars = []}};
        Left ->
            St1 = St#st{sidecars = Left},
            meta(St1),
            {noreply, St1}
    end;
handle_info(prime_cpu, St) ->
    case whereis(cpu_sup) of
        undefined ->
            {noreply, St};
        _ ->
            _ = catch cpu_sup:util([detailed]),
            {noreply, St#st{cpu_primed = true}}
    end;
handle_info(_Other, St) ->
    {noreply, St}.

terminate(_Reason, St) ->
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
    ok.

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

meta(#st{sidecars = Ns, sysmon = Sysmon, swt = Swt, msacc = Msacc}) ->
    Since = case ets:lookup(?TAB, meta) of
                [{meta, _, S, _, _, _}] -> S;
                [] -> erlang:monotonic_time(millisecond)
            end,
    ets:insert(?TAB, {meta, Sysmon, Since, length(Ns), Swt, Msacc}).

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
