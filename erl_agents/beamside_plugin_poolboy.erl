%%% ===========================================================================
%%% beamside_plugin_poolboy -- poolboy pools: size, overflow, checked out, waiting.
%%% ===========================================================================
%%%
%%% Applies when the poolboy application runs or its module is loaded (poolboy
%%% is often a library nobody starts as an application).  Runs in a process
%%% bounded by plugin_timeout_ms (see beamside_plugin).
%%%
%%% Pools are found without configuration: the registered processes whose
%%% proc_lib initial call is poolboy:init/1 (an unregistered pool is not
%%% seen), at most max_pools (100) of them, among at most max_registered
%%% (5000) registered names.  On OTP 26 and later only the '$initial_call'
%%% entry of each dictionary is read; on OTP 25 the dictionaries of the
%%% registered proc_lib processes are read whole.
%%%
%%% Each pool is read with one sys:get_state/2 call (at most 500 ms, and all
%%% of them within half of plugin_timeout_ms: a pool not asked in time is
%%% {error, no_time}; a pool that does not answer is {error, Reason}), then
%%% its record (poolboy 1.2 to 1.5) is read by position:
%%%
%%%   version        poolboy's application version (binary), when known
%%%   pools          #{PoolName => #{size, max_overflow, overflow, available,
%%%                   checked_out, waiting} | {error, Reason}}
%%%                    size          workers the pool keeps
%%%                    max_overflow  extra workers it may start under load
%%%                    overflow      extra workers running now
%%%                    available     idle workers
%%%                    checked_out   workers lent out (its monitors table)
%%%                    waiting       callers blocked in checkout for a worker
%%%   pools_truncated true when more pools (or registered names) than the
%%%                   bounds exist
%%%
%%% Cost: one message round trip per pool (the pool answers a system message
%%% between two requests) and a dictionary lookup per registered proc_lib
%%% process; nothing is sent to a worker.
%%% ===========================================================================
-module(beamside_plugin_poolboy).
-behaviour(beamside_plugin).

-export([name/0, applies/1, collect/1]).

-define(CALL_MS, 500).

-spec name() -> atom().
name() -> poolboy.

-spec applies([atom()]) -> boolean().
applies(Apps) -> lists:member(poolboy, Apps) orelse erlang:module_loaded(poolboy).

-spec collect(map()) -> map().
collect(Opts) ->
    MaxPools = beamside_agent:int_opt(max_pools, Opts, 100, {0, 10000}),
    MaxNames = beamside_agent:int_opt(max_registered, Opts, 5000, {0, 1000000}),
    Deadline = beamside_plugin:deadline(Opts),
    Names = registered(),
    {Found, More} = find(lists:sublist(Names, MaxNames), MaxPools, initial_call_reader(), []),
    Base = #{pools => maps:from_list([{Name, pool(Pid, Deadline)} || {Name, Pid} <- Found]),
             pools_truncated => More orelse length(Names) > MaxNames},
    beamside_plugin:with_version(poolboy, Base).

%% The pools among the registered names: at most Max, and whether more exist.
find([], _Max, _Read, Acc) ->
    {lists:reverse(Acc), false};
find([Name | Rest], Max, Read, Acc) ->
    case pool_pid(Name, Read) of
        false -> find(Rest, Max, Read, Acc);
        _Pid when length(Acc) >= Max -> {lists:reverse(Acc), true};
        Pid -> find(Rest, Max, Read, [{Name, Pid} | Acc])
    end.

pool_pid(Name, Read) ->
    case whereis(Name) of
        Pid when is_pid(Pid) ->
            case erlang:process_info(Pid, initial_call) of
                {initial_call, {proc_lib, init_p, 5}} ->
                    Read(Pid) =:= {poolboy, init, 1} andalso Pid;
                _ ->
                    false
            end;
        _ ->
            false
    end.

%% OTP 26 reads one dictionary key; OTP 25 copies the dictionary.
initial_call_reader() ->
    case list_to_integer(erlang:system_info(otp_release)) >= 26 of
        true ->
            fun(Pid) ->
                    case erlang:process_info(Pid, {dictionary, '$initial_call'}) of
                        {{dictionary, '$initial_call'}, MFA} -> MFA;
                        _ -> undefined
                    end
            end;
        false ->
            fun(Pid) ->
                    case erlang:process_info(Pid, dictionary) of
                        {dictionary, D} -> proplists:get_value('$initial_call', D);
                        _ -> undefined
                    end
            end
    end.

pool(Pid, Deadline) ->
    case min(?CALL_MS, Deadline - erlang:monotonic_time(millisecond)) of
        Ms when Ms =< 0 ->
            {error, no_time};
        Ms ->
            try sys:get_state(Pid, Ms) of
                State -> state_of(State)
            catch
                exit:{timeout, _} -> {error, timeout};
                exit:{noproc, _} -> {error, noproc};
                _:Reason -> {error, beamside_agent:reason(Reason)}
            end
    end.

%% -record(state, {supervisor, workers, waiting, monitors, size, overflow,
%%                 max_overflow, strategy}) in 1.5 (no strategy before 1.5);
%% workers a list (before 1.5) or a queue, waiting a queue.
state_of(State) when is_tuple(State), tuple_size(State) >= 8, element(1, State) =:= state ->
    Workers = element(3, State),
    Size = element(6, State),
    Overflow = element(7, State),
    Available = count(Workers),
    Lent = case ets_size(element(5, State)) of
               undefined when is_integer(Size), is_integer(Overflow), is_integer(Available) ->
                   max(0, Size + Overflow - Available);
               N -> N
           end,
    #{size => Size,
      max_overflow => element(8, State),
      overflow => Overflow,
      available => Available,
      checked_out => Lent,
      waiting => count(element(4, State))};
state_of(_) ->
    {error, not_a_poolboy_state}.

count(L) when is_list(L) -> length(L);
count(Q) ->
    case queue:is_queue(Q) of
        true -> queue:len(Q);
        false -> undefined
    end.

ets_size(Tab) ->
    try ets:info(Tab, size) of
        N when is_integer(N) -> N;
        _ -> undefined
    catch
        _:_ -> undefined
    end.
