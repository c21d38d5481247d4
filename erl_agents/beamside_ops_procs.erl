%%% ===========================================================================
%%% beamside_ops_procs -- processes: the Processes service of the
%%% control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}), the rules every operator tool follows (bounded lists,
%%% deadlines, helpers with heap limits, no atoms created) and the text
%%% limits (depth, chars) are in beamside_ops's header.  A process (Target)
%%% is a local pid as text (<0.N.M>) or a registered name.
%%%
%%% Functions (Opts is a map; all its keys optional):
%%%   top(Opts)                    top processes: sort_by (memory |
%%%                                message_queue_len | reductions |
%%%                                reductions_rate), limit (20, <= 1000),
%%%                                name_filter (binary, substring of the
%%%                                registered name), module_filter (binary,
%%%                                module of the current function or of the
%%%                                initial call, proc_lib's translated),
%%%                                sample_ms (1000, <= 10000: the window of
%%%                                reductions_rate), timeout_ms (5000, <=
%%%                                60000), max_processes (1000000)
%%%   process(Target, Opts)        process_info, links, monitors, dictionary,
%%%                                stack trace, the first messages (messages,
%%%                                10, <= 100; the queue is only copied when
%%%                                it is at most messages_max_queue, 200000,
%%%                                long), sys:get_state of an OTP process
%%%                                (state => false to skip; state_timeout_ms
%%%                                1000, <= 10000); the state, the messages
%%%                                and the dictionary values are printed
%%%                                with their secrets redacted
%%%                                (beamside_redact) unless reveal => true;
%%%                                sys:get_status the same way with
%%%                                sys_status => true
%%%   terminate(Target, Reason, Opts)  exit(Pid, Reason), then waits up to
%%%                                wait_ms (1000) to see it gone; only after
%%%                                the safety check of beamside_ops_safety
%%%                                (check_ms, 3000, <= 10000), refused as
%%%                                precondition with the reason
%%%   gc(Target | all, Opts)       garbage_collect/1 of one process, or of all
%%%                                in batches of batch_size (100, <= 10000)
%%%                                with pause_ms (10, <= 10000) between them,
%%%                                timeout_ms (60000, <= 600000) in all
%%%   terminate_shells(Opts)       kills shell servers and evaluators (shell,
%%%                                IEx); only remote shells (group leader on
%%%                                another node) unless include_local => true;
%%%                                the same safety check for each (a refused
%%%                                shell is counted in spared)
%%%
%%% What may be stopped (terminate/3, terminate_shells/1) is decided by
%%% beamside_ops_safety: see the rules in its header.
%%% ===========================================================================
-module(beamside_ops_procs).

-export([top/1, process/2, terminate/3, gc/2, terminate_shells/1]).

-import(beamside_ops, [int/5, text/2, pid_text/1, existing_atom/1, bounded/3, run/3,
                       invalid/1, not_found/1, precondition/1, timeout/1, internal/1,
                       bad_opts/0]).

-define(MAX_TOP, 1000).
-define(CHECK_EVERY, 512).            % processes walked between two deadline checks
-define(MAX_LIST, 100).               % links, monitors, dictionary entries shown
-define(HELPER_HEAP, beamside_ops:helper_heap()).
-define(GC_WAIT, 5000).            % ms a batch waits for its collections

-type reply(T) :: beamside_ops:reply(T).

%%% ---------------------------------------------------------------------------
%%% processes: top

-spec top(map()) -> reply(map()).
top(Opts) when is_map(Opts) ->
    case maps:get(sort_by, Opts, memory) of
        Key when Key =:= memory; Key =:= message_queue_len; Key =:= reductions;
                 Key =:= reductions_rate ->
            case filter(Opts) of
                {error, _} = E ->
                    E;
                Filter ->
                    TimeoutMs = int(timeout_ms, Opts, 5000, 100, 60000),
                    SampleMs = case Key of
                                   reductions_rate -> int(sample_ms, Opts, 1000, 10, 10000);
                                   _ -> 0
                               end,
                    Cfg = #{key => Key, filter => Filter,
                            limit => int(limit, Opts, 20, 1, ?MAX_TOP),
                            max => int(max_processes, Opts, 1000000, 1, 134217727),
                            sample_ms => SampleMs, timeout_ms => TimeoutMs, opts => Opts,
                            caller => self()},
                    Count = erlang:system_info(process_count),
                    Heap = min(?HELPER_HEAP, 6 * (min(Count, maps:get(max, Cfg)) + 1000)),
                    run(fun() -> top_run(Cfg) end, TimeoutMs * 2 + SampleMs + 1000,
                            [{min_heap_size, Heap}])
            end;
        _ ->
            invalid(<<"sort_by must be memory, message_queue_len, reductions "
                      "or reductions_rate">>)
    end;
top(_) ->
    bad_opts().

filter(Opts) ->
    Name = case maps:get(name_filter, Opts, undefined) of
               B when is_binary(B), B =/= <<>> -> B;
               _ -> undefined
           end,
    case maps:get(module_filter, Opts, undefined) of
        M when is_binary(M), M =/= <<>> ->
            try binary_to_existing_atom(M, utf8) of
                Mod -> {Name, Mod}
            catch error:badarg ->
                    %% No such atom: no process can run that module.
                    {Name, {no_module, M}}
            end;
        _ ->
            {Name, undefined}
    end.

top_run(#{key := Key, limit := Limit, max := Max, timeout_ms := TimeoutMs,
          caller := Caller} = Cfg) ->
    T0 = erlang:monotonic_time(),
    Deadline = T0 + erlang:convert_time_unit(TimeoutMs, millisecond, native),
    %% Not us: the walker and the rpc process would top the reductions.
    Ours = [self(), Caller],
    Pids = take(erlang:processes() -- Ours, Max),
    Total = erlang:system_info(process_count),
    {Stop, Walked, Vanished, Top} =
        case Key of
            reductions_rate ->
                {S1, Before} = sample_reductions(Pids, Deadline),
                timer:sleep(maps:get(sample_ms, Cfg)),
                Deadline2 = erlang:monotonic_time()
                    + erlang:convert_time_unit(TimeoutMs, millisecond, native),
                {S2, W, V, Tp} = scan(take(erlang:processes() -- Ours, Max),
                                      Cfg#{before => Before},
                                      Deadline2),
                {worst(S1, S2), W, V, Tp};
            _ ->
                scan(Pids, Cfg, Deadline)
        end,
    Described = lists:filtermap(fun({V, P}) -> describe(P, Key, V, Cfg) end,
                                lists:reverse(gb_sets:to_list(Top))),
    Sorted = case Key of
                 reductions_rate -> Described;  % the window's figures are the order
                 _ -> lists:sort(fun(A, B) -> maps:get(Key, A) >= maps:get(Key, B) end,
                                 Described)
             end,
    #{processes => lists:sublist(Sorted, Limit),
      process_count => Total,
      walked => Walked,
      %% Processes that exited between the walk and their description too.
      vanished => Vanished + gb_sets:size(Top) - length(Described),
      truncated => Stop =/= done,
      truncated_by => Stop,
      duration_us => erlang:convert_time_unit(erlang:monotonic_time() - T0, native,
                                              microsecond)}.

worst(done, S) -> S;
worst(S, _) -> S.

take(L, Max) when length(L) =< Max -> L;
take(L, Max) -> lists:sublist(L, Max).

sample_reductions(Pids, Deadline) ->
    sample_reductions(Pids, ?CHECK_EVERY, Deadline, []).

sample_reductions([], _, _, Acc) ->
    {done, maps:from_list(Acc)};
sample_reductions(Pids, 0, Deadline, Acc) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, maps:from_list(Acc)};
        false -> sample_reductions(Pids, ?CHECK_EVERY, Deadline, Acc)
    end;
sample_reductions([P | Ps], N, Deadline, Acc) ->
    case erlang:process_info(P, reductions) of
        {reductions, R} -> sample_reductions(Ps, N - 1, Deadline, [{P, R} | Acc]);
        undefined -> sample_reductions(Ps, N - 1, Deadline, Acc)
    end.

%% One pass over Pids: {done | time, Walked, Vanished, TopSet}.  TopSet is a
%% gb_set of {Value, Pid} with at most `limit' elements.
scan(Pids, #{key := Key, filter := Filter, limit := Limit} = Cfg, Deadline) ->
    Item = case Key of
               reductions_rate -> reductions;
               _ -> Key
           end,
    Items = case Filter of
                {undefined, undefined} -> Item;
                {_, undefined} -> [Item, registered_name];
                _ -> [Item, registered_name, current_function, initial_call]
            end,
    Before = maps:get(before, Cfg, undefined),
    scan(Pids, ?CHECK_EVERY, Deadline, Items, Filter, Before, Limit, 0, 0, gb_sets:new(), 0).

scan([], _, _, _, _, _, _, W, V, Top, _) ->
    {done, W, V, Top};
scan(Pids, 0, Deadline, Items, F, B, Limit, W, V, Top, Min) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, W, V, Top};
        false -> scan(Pids, ?CHECK_EVERY, Deadline, Items, F, B, Limit, W, V, Top, Min)
    end;
scan([P | Ps], N, Deadline, Items, F, B, Limit, W, V, Top, Min) ->
    case value(P, Items, F, B) of
        gone ->
            scan(Ps, N - 1, Deadline, Items, F, B, Limit, W + 1, V + 1, Top, Min);
        skip ->
            scan(Ps, N - 1, Deadline, Items, F, B, Limit, W + 1, V, Top, Min);
        Val ->
            {Top1, Min1} = top_add(Val, P, Top, Min, Limit),
            scan(Ps, N - 1, Deadline, Items, F, B, Limit, W + 1, V, Top1, Min1)
    end.

%% The sort value of a process, `skip' when the filter leaves it out, `gone'
%% when it exited.
value(P, Item, _, Before) when is_atom(Item) ->
    case erlang:process_info(P, Item) of
        {_, X} when Before =:= undefined -> X;
        {_, X} -> X - maps:get(P, Before, 0);
        undefined -> gone
    end;
value(P, Items, {Name, Mod}, Before) ->
    case erlang:process_info(P, Items) of
        undefined ->
            gone;
        [{_, X}, {registered_name, Reg} | Rest] ->
            case name_ok(Name, Reg) andalso module_ok(Mod, P, Rest) of
                true when Before =:= undefined -> X;
                true -> X - maps:get(P, Before, 0);
                false -> skip
            end
    end.

name_ok(undefined, _) -> true;
name_ok(_, []) -> false;
name_ok(Sub, Reg) -> binary:match(atom_to_binary(Reg, utf8), Sub) =/= nomatch.

module_ok(undefined, _, _) -> true;
module_ok({no_module, _}, _, _) -> false;
module_ok(Mod, P, [{current_function, CF}, {initial_call, IC}]) ->
    mod_of(CF) =:= Mod orelse mod_of(IC) =:= Mod
        orelse (IC =:= {proc_lib, init_p, 5} andalso mod_of(initial_call(P, IC)) =:= Mod).

mod_of({M, _, _}) -> M;
mod_of(_) -> undefined.

top_add(V, P, Top, Min, Limit) ->
    case gb_sets:size(Top) of
        S when S < Limit ->
            T1 = gb_sets:add({V, P}, Top),
            {T1, element(1, gb_sets:smallest(T1))};
        _ when V > Min ->
            {_, T1} = gb_sets:take_smallest(Top),
            T2 = gb_sets:add({V, P}, T1),
            {T2, element(1, gb_sets:smallest(T2))};
        _ ->
            {Top, Min}
    end.

describe(P, Key, V, #{opts := Opts}) ->
    Items = [registered_name, memory, message_queue_len, reductions, current_function,
             initial_call, status],
    case erlang:process_info(P, Items) of
        [{registered_name, Reg}, {memory, Mem}, {message_queue_len, Len}, {reductions, Red},
         {current_function, CF}, {initial_call, IC}, {status, St}] ->
            Base = #{pid => pid_text(P),
                     registered_name => name_text(Reg),
                     memory => Mem,
                     message_queue_len => Len,
                     reductions => Red,
                     current_function => mfa_text(CF, Opts),
                     initial_call => mfa_text(initial_call(P, IC), Opts),
                     status => atom_to_binary(St, utf8)},
            {true, case Key of
                       reductions_rate -> Base#{reductions_delta => V};
                       _ -> Base
                   end};
        undefined ->
            false
    end.

%% proc_lib's own initial call for processes it started.
initial_call(P, {proc_lib, init_p, 5} = IC) ->
    try proc_lib:translate_initial_call(P) of
        {M, F, A} when is_atom(M), is_atom(F), is_integer(A) -> {M, F, A};
        _ -> IC
    catch _:_ -> IC
    end;
initial_call(_, IC) ->
    IC.

%%% ---------------------------------------------------------------------------
%%% processes: one process

-spec process(binary(), map()) -> reply(map()).
process(Target, Opts) when is_map(Opts) ->
    with_pid(Target, fun(P) -> process_(P, Opts) end);
process(_, _) ->
    bad_opts().

process_(P, Opts) ->
    Items = [registered_name, status, current_function, initial_call, memory,
             message_queue_len, reductions, heap_size, total_heap_size, stack_size,
             links, monitors, monitored_by, trap_exit, priority, group_leader,
             current_stacktrace, garbage_collection, error_handler, dictionary],
    %% The dictionary and the link lists are copied: do it in a helper with a
    %% heap limit so a process with a huge dictionary cannot bloat us.
    Info = bounded(fun() -> erlang:process_info(P, Items) end, 5000,
                   [{max_heap_size, #{size => ?HELPER_HEAP, kill => true,
                                      error_logger => false}}]),
    case Info of
        {ok, undefined} ->
            not_found(<<"the process exited">>);
        {ok, L} ->
            M = maps:from_list(L),
            Dict = maps:get(dictionary, M),
            IC = case lists:keyfind('$initial_call', 1, Dict) of
                     {_, {Mod, F, A}} when is_atom(Mod), is_atom(F), is_integer(A) -> {Mod, F, A};
                     _ -> maps:get(initial_call, M)
                 end,
            Base = #{pid => pid_text(P),
                     registered_name => name_text(maps:get(registered_name, M)),
                     status => atom_to_binary(maps:get(status, M), utf8),
                     current_function => mfa_text(maps:get(current_function, M), Opts),
                     initial_call => mfa_text(IC, Opts),
                     memory => maps:get(memory, M),
                     message_queue_len => maps:get(message_queue_len, M),
                     reductions => maps:get(reductions, M),
                     heap_size => maps:get(heap_size, M),
                     total_heap_size => maps:get(total_heap_size, M),
                     stack_size => maps:get(stack_size, M),
                     trap_exit => maps:get(trap_exit, M),
                     priority => atom_to_binary(maps:get(priority, M), utf8),
                     group_leader => pid_text(maps:get(group_leader, M)),
                     links => texts(maps:get(links, M), Opts),
                     links_count => length(maps:get(links, M)),
                     monitors => texts(maps:get(monitors, M), Opts),
                     monitored_by => texts(maps:get(monitored_by, M), Opts),
                     stacktrace => [frame_text(Fr, Opts)
                                    || Fr <- lists:sublist(maps:get(current_stacktrace, M),
                                                           ?MAX_LIST)],
                     garbage_collection => text(maps:get(garbage_collection, M), Opts),
                     error_handler => atom_to_binary(maps:get(error_handler, M), utf8),
                     dictionary => [#{key => text(K, Opts),
                                      value => text(element(2, shown({K, V}, Opts)), Opts)}
                                    || {K, V} <- lists:sublist(Dict, ?MAX_LIST)],
                     dictionary_size => length(Dict)},
            Msgs = messages(P, maps:get(message_queue_len, M), Opts),
            State = case maps:get(state, Opts, true) of
                        false -> #{state_error => <<"not asked">>};
                        _ -> state(P, Dict, maps:get(initial_call, M), Opts)
                    end,
            Status = case maps:get(sys_status, Opts, false) of
                         true -> sys_status(P, Dict, maps:get(initial_call, M), Opts);
                         _ -> #{}
                     end,
            {ok, maps:merge(maps:merge(maps:merge(Base, Msgs), State), Status)};
        {error, timeout} ->
            timeout(<<"process_info did not answer within 5 s">>);
        {error, Why} ->
            internal(text(Why, Opts))
    end.

messages(_P, 0, _Opts) ->
    #{messages => []};
messages(P, Len, Opts) ->
    N = int(messages, Opts, 10, 0, 100),
    MaxQ = int(messages_max_queue, Opts, 200000, 0, 10000000),
    if
        N =:= 0 ->
            #{messages => []};
        Len > MaxQ ->
            #{messages => [],
              messages_error => iolist_to_binary(
                                  io_lib:format("not copied: ~b messages queued, more than "
                                                "~b", [Len, MaxQ]))};
        true ->
            Copy = fun() ->
                           case erlang:process_info(P, messages) of
                               {messages, Ms} -> [text(shown(X, Opts), Opts)
                                                  || X <- lists:sublist(Ms, N)];
                               undefined -> []
                           end
                   end,
            case bounded(Copy, 5000, [{max_heap_size, #{size => ?HELPER_HEAP, kill => true,
                                                          error_logger => false}}]) of
                {ok, Texts} -> #{messages => Texts};
                {error, Why} -> #{messages => [], messages_error => text(Why, Opts)}
            end
    end.

%% sys:get_state only for processes that answer system messages (started by
%% proc_lib): anything else would keep the request in its queue forever.
state(P, Dict, IC, Opts) ->
    ask_sys(Dict, IC, Opts, fun(T) -> sys:get_state(P, T) end).

%% Ask(Timeout) of an OTP process (sys:get_state or sys:get_status), bounded.
ask_sys(Dict, IC, Opts, Ask) ->
    OTP = lists:keymember('$initial_call', 1, Dict) orelse mod_of(IC) =:= proc_lib,
    case OTP of
        false ->
            #{state_error => <<"not an OTP process (sys:get_state not attempted)">>};
        true ->
            T = int(state_timeout_ms, Opts, 1000, 1, 10000),
            Get = fun() -> text(shown(Ask(T), Opts), state_opts(Opts)) end,
            case bounded(Get, T + 500, [{max_heap_size, #{size => ?HELPER_HEAP, kill => true,
                                                            error_logger => false}}]) of
                {ok, Text} ->
                    #{state => Text};
                {error, {raised, exit, {timeout, _}}} ->
                    #{state_error => timeout_text(T)};
                {error, timeout} ->
                    #{state_error => timeout_text(T)};
                {error, {raised, exit, {Why, {sys, _, _}}}} ->
                    #{state_error => text(Why, Opts)};
                {error, Why} ->
                    #{state_error => text(Why, Opts)}
            end
    end.

%% sys:get_status, as state/4 asks sys:get_state: only of an OTP process, in a
%% helper with a time and heap limit, printed with its secrets redacted.
sys_status(P, Dict, IC, Opts) ->
    case ask_sys(Dict, IC, Opts, fun(T) -> sys:get_status(P, T) end) of
        #{state := Text} -> #{sys_status => Text};
        #{state_error := Why} -> #{sys_status_error => Why}
    end.

%% A term as it may be shown: its secrets redacted unless reveal => true.
shown(T, #{reveal := true}) -> T;
shown(T, _Opts) -> beamside_redact:redact(T).

state_opts(Opts) ->
    Opts#{chars => int(chars, Opts, 16384, 16, 65536)}.

timeout_text(T) ->
    iolist_to_binary(io_lib:format("sys:get_state timed out after ~b ms "
                                   "(the process is busy or blocked)", [T])).

%%% ---------------------------------------------------------------------------
%%% processes: terminate, gc, shells

-spec terminate(binary(), atom(), map()) -> reply(map()).
terminate(Target, Reason, Opts) when is_atom(Reason), is_map(Opts) ->
    with_pid(Target, fun(P) ->
                             case beamside_ops_safety:check_stop(P, Opts) of
                                 ok -> terminate_(P, Reason, Opts);
                                 {refused, Why} -> precondition(Why)
                             end
                     end);
terminate(_, _, _) ->
    bad_opts().

terminate_(P, Reason, Opts) ->
    Wait = int(wait_ms, Opts, 1000, 0, 10000),
    Ref = erlang:monitor(process, P),
    exit(P, Reason),
    Gone = receive
               {'DOWN', Ref, process, P, _} -> true
           after Wait ->
                   erlang:demonitor(Ref, [flush]),
                   false
           end,
    {ok, #{pid => pid_text(P), reason => atom_to_binary(Reason, utf8), terminated => Gone}}.

-spec gc(binary() | all, map()) -> reply(map()).
gc(all, Opts) when is_map(Opts) ->
    Batch = int(batch_size, Opts, 100, 1, 10000),
    Pause = int(pause_ms, Opts, 10, 0, 10000),
    TimeoutMs = int(timeout_ms, Opts, 60000, 100, 600000),
    Run = fun() ->
                  T0 = erlang:monotonic_time(),
                  Deadline = T0 + erlang:convert_time_unit(TimeoutMs, millisecond, native),
                  Before = erlang:memory(processes),
                  {Stop, Acc} = gc_batches(erlang:processes() -- [self()], Batch, Pause,
                                           Deadline, {0, 0, 0, 0}),
                  {Collected, Freed, Vanished, Batches} = Acc,
                  #{collected => Collected, bytes_freed => Freed, vanished => Vanished,
                    batches => Batches, truncated => Stop =/= done,
                    processes_memory_before => Before,
                    processes_memory_after => erlang:memory(processes),
                    duration_us => erlang:convert_time_unit(erlang:monotonic_time() - T0,
                                                            native, microsecond)}
          end,
    run(Run, TimeoutMs + Pause + 2000, [{priority, low}]);
gc(Target, Opts) when is_map(Opts) ->
    with_pid(Target, fun(P) ->
                             T0 = erlang:monotonic_time(),
                             case gc_batch([P]) of
                                 {0, _, _} ->
                                     not_found(<<"the process exited (or did not answer "
                                                 "within 5 s)">>);
                                 {1, Freed, _} ->
                                     {ok, #{collected => 1, bytes_freed => Freed, vanished => 0,
                                            batches => 1, truncated => false,
                                            duration_us => erlang:convert_time_unit(
                                                             erlang:monotonic_time() - T0,
                                                             native, microsecond)}}
                             end
                     end);
gc(_, _) ->
    bad_opts().

gc_batches([], _, _, _, Acc) ->
    {done, Acc};
gc_batches(Pids, Batch, Pause, Deadline, {C, F, V, B}) ->
    case erlang:monotonic_time() > Deadline of
        true ->
            {time, {C, F, V, B}};
        false ->
            {Now, Rest} = split(Pids, Batch),
            {C1, F1, V1} = gc_batch(Now),
            case Rest of
                [] -> ok;
                _ -> timer:sleep(Pause)
            end,
            gc_batches(Rest, Batch, Pause, Deadline, {C + C1, F + F1, V + V1, B + 1})
    end.

%% One batch: the collections are asked for all at once (async) and waited
%% for at most ?GC_WAIT ms; a process that does not answer in time (busy in a
%% long call) is counted as vanished, its collection still happens later.
gc_batch(Pids) ->
    Asked = lists:filtermap(
              fun(P) ->
                      case erlang:process_info(P, memory) of
                          {memory, M0} ->
                              Ref = make_ref(),
                              _ = erlang:garbage_collect(P, [{async, Ref}]),
                              {true, {Ref, P, M0}};
                          undefined ->
                              false
                      end
              end, Pids),
    Until = erlang:monotonic_time(millisecond) + ?GC_WAIT,
    lists:foldl(fun({Ref, P, M0}, {C, F, V}) ->
                        Wait = max(0, Until - erlang:monotonic_time(millisecond)),
                        receive
                            {garbage_collect, Ref, true} ->
                                case erlang:process_info(P, memory) of
                                    {memory, M1} -> {C + 1, F + M0 - M1, V};
                                    undefined -> {C + 1, F + M0, V}
                                end;
                            {garbage_collect, Ref, false} ->
                                {C, F, V + 1}
                        after Wait ->
                                {C, F, V + 1}
                        end
                end, {0, 0, length(Pids) - length(Asked)}, Asked).

split(L, N) -> split(L, N, []).

split([], _, Acc) -> {lists:reverse(Acc), []};
split(L, 0, Acc) -> {lists:reverse(Acc), L};
split([H | T], N, Acc) -> split(T, N - 1, [H | Acc]).

-spec terminate_shells(map()) -> reply(map()).
terminate_shells(Opts) when is_map(Opts) ->
    Local = maps:get(include_local, Opts, false) =:= true,
    TimeoutMs = int(timeout_ms, Opts, 5000, 100, 60000),
    Caller = self(),
    Run = fun() ->
                  Deadline = erlang:monotonic_time()
                      + erlang:convert_time_unit(TimeoutMs, millisecond, native),
                  {Stop, Found} = find_shells(erlang:processes(), ?CHECK_EVERY, Deadline, []),
                  Chosen = [S || #{remote := R} = S <- Found, R orelse Local],
                  %% Servers first: a server whose evaluator dies starts another.
                  Ordered = [S || #{kind := server} = S <- Chosen]
                      ++ [S || #{kind := K} = S <- Chosen, K =/= server],
                  %% The same rules as terminate/3, checked before any kill (a
                  %% shell that is, say, the parent of an application's
                  %% supervisor is spared and counted in spared).
                  Ctx = beamside_ops_safety:protect_ctx(Deadline, Caller),
                  Allowed = [S || #{pid := P} = S <- lists:sublist(Ordered, 1000),
                                  beamside_ops_safety:may_stop(P, Ctx) =:= ok],
                  Killed = lists:filtermap(
                             fun(#{pid := P} = S) ->
                                     case is_process_alive(P) of
                                         true ->
                                             exit(P, kill),
                                             {true, S#{pid => pid_text(P),
                                                       current_function =>
                                                           mfa_text(maps:get(cf, S), Opts)}};
                                         false ->
                                             false
                                     end
                             end, Allowed),
                  #{terminated => [maps:remove(cf, S) || S <- Killed],
                    spared => length(Found) - length(Allowed),
                    truncated => Stop =/= done}
          end,
    run(Run, TimeoutMs + 1000, []);
terminate_shells(_) ->
    bad_opts().

find_shells([], _, _, Acc) ->
    {done, Acc};
find_shells(Pids, 0, Deadline, Acc) ->
    case erlang:monotonic_time() > Deadline of
        true -> {time, Acc};
        false -> find_shells(Pids, ?CHECK_EVERY, Deadline, Acc)
    end;
find_shells([P | Ps], N, Deadline, Acc) ->
    case erlang:process_info(P, [current_function, initial_call, group_leader]) of
        [{current_function, CF}, {initial_call, IC}, {group_leader, GL}] ->
            case shell_kind(CF, initial_call(P, IC)) of
                false ->
                    find_shells(Ps, N - 1, Deadline, Acc);
                Kind ->
                    S = #{pid => P, kind => Kind, cf => CF,
                          remote => node(GL) =/= node(),
                          group_leader_node => atom_to_binary(node(GL), utf8)},
                    find_shells(Ps, N - 1, Deadline, [S | Acc])
            end;
        undefined ->
            find_shells(Ps, N - 1, Deadline, Acc)
    end.

shell_kind(_, {shell, server, _}) -> server;
shell_kind(_, {shell, evaluator, _}) -> evaluator;
shell_kind({shell, eval_loop, _}, _) -> evaluator;
shell_kind({shell, F, _}, _) when F =:= server_loop; F =:= get_command1;
                                  F =:= get_command ->
    server;
shell_kind(_, {'Elixir.IEx.Server', _, _}) -> server;
shell_kind(_, {'Elixir.IEx.Evaluator', _, _}) -> evaluator;
shell_kind({'Elixir.IEx.Evaluator', _, _}, _) -> evaluator;
shell_kind({'Elixir.IEx.Server', _, _}, _) -> server;
shell_kind(_, _) -> false.

%%% ---------------------------------------------------------------------------
%%% helpers

%% A local pid (<0.N.M>) or a registered name, as text; Fun(Pid) if it is alive.
with_pid(Target, Fun) when is_binary(Target) ->
    case resolve_pid(Target) of
        {ok, P} ->
            case is_process_alive(P) of
                true -> Fun(P);
                false -> not_found(<<"no process ", Target/binary>>)
            end;
        {error, _} = E ->
            E
    end;
with_pid(_, _) ->
    invalid(<<"a process is a pid like <0.123.0> or a registered name">>).

resolve_pid(<<"<", _/binary>> = Text) ->
    try list_to_pid(binary_to_list(Text)) of
        P when node(P) =:= node() -> {ok, P};
        _ -> invalid(<<Text/binary, " is not a pid of this node (<0.N.M>)">>)
    catch error:badarg -> invalid(<<"not a pid: ", Text/binary>>)
    end;
resolve_pid(Name) ->
    case existing_atom(Name) of
        {ok, A} ->
            case whereis(A) of
                P when is_pid(P) -> {ok, P};
                _ -> not_found(<<"no process registered as ", Name/binary>>)
            end;
        error ->
            not_found(<<"no process registered as ", Name/binary>>)
    end.

texts(L, Opts) ->
    [text(X, Opts#{chars => int(chars, Opts, 256, 16, 4096)}) || X <- lists:sublist(L, ?MAX_LIST)].

name_text([]) -> <<>>;
name_text(A) when is_atom(A) -> atom_to_binary(A, utf8);
name_text(_) -> <<>>.

mfa_text({M, F, A}, _) when is_atom(M), is_atom(F), is_integer(A) ->
    iolist_to_binary(io_lib:format("~tw:~tw/~b", [M, F, A]));
mfa_text(Other, Opts) ->
    text(Other, Opts).

frame_text({M, F, A, Loc}, Opts) ->
    Arity = case A of
                N when is_integer(N) -> N;
                Args when is_list(Args) -> length(Args)
            end,
    Where = case {proplists:get_value(file, Loc), proplists:get_value(line, Loc)} of
                {undefined, _} -> "";
                {File, undefined} -> io_lib:format(" (~ts)", [File]);
                {File, Line} -> io_lib:format(" (~ts:~b)", [File, Line])
            end,
    iolist_to_binary([mfa_text({M, F, Arity}, Opts), Where]);
frame_text(Other, Opts) ->
    text(Other, Opts).
