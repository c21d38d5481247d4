%%% ===========================================================================
%%% beamside_ops -- the operator tools behind the gRPC control plane.
%%% ===========================================================================
%%%
%%% Every function is called by the sidecar through rex (one rpc per gRPC
%%% call) and answers {ok, Result} or {error, {Kind, Message}}, where Kind
%%% tells the sidecar which status to give the client:
%%%   invalid       the arguments were wrong (bad pid, bad option, syntax)
%%%   not_found     no such process, table, module or application
%%%   precondition  refused as asked (a private table, a system process)
%%%   timeout       the work did not finish in the time it was given
%%%   internal      anything else
%%% and Message is a short binary saying what happened.
%%%
%%% Rules all functions follow (the node must never be harmed by a look):
%%%   * every list is bounded: a limit option with a default and a maximum
%%%     (values outside [Min, Max] are clamped here; the sidecar rejects them
%%%     before they get here);
%%%   * every walk has a deadline and stops there with truncated => true; the
%%%     work runs in a fresh process killed when it overruns by a second, so a
%%%     timed-out rpc never leaves work running;
%%%   * a process that exits while we look at it is skipped (counted in
%%%     vanished), never an error;
%%%   * terms come back as text printed with ~0tP (depth limited) and
%%%     io_lib's chars_limit, then cut to a hard byte limit;
%%%   * anything that waits on another process (sys:get_state, copying a
%%%     message queue, evaluating an expression) runs in a spawned helper with
%%%     a time limit and a heap limit, so a blocked or huge process cannot
%%%     hang or bloat the caller;
%%%   * text from the client (pids, names, tables, modules) is looked up with
%%%     binary_to_existing_atom: looking never creates atoms.  Only set_env
%%%     (a new key, the value) and eval create atoms, as asked.
%%%
%%% Functions (Opts is a map; all its keys optional):
%%%   node_info(Opts)              system info, applications (name, vsn,
%%%                                description), release from init:script_id
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
%%%                                1000, <= 10000)
%%%   terminate(Target, Reason, Opts)  exit(Pid, Reason), then waits up to
%%%                                wait_ms (1000) to see it gone; only after
%%%                                the safety check below (check_ms, 3000,
%%%                                <= 10000), refused as precondition with
%%%                                the reason
%%%   gc(Target | all, Opts)       garbage_collect/1 of one process, or of all
%%%                                in batches of batch_size (100, <= 10000)
%%%                                with pause_ms (10, <= 10000) between them,
%%%                                timeout_ms (60000, <= 600000) in all
%%%   terminate_shells(Opts)       kills shell servers and evaluators (shell,
%%%                                IEx); only remote shells (group leader on
%%%                                another node) unless include_local => true;
%%%                                the same safety check for each (a refused
%%%                                shell is counted in spared)
%%%   tables(Opts)                 ETS tables: order_by (memory | size | name
%%%                                | id), limit (100, <= 10000)
%%%   read_table(Table, Cont, Opts)  a page of limit (100, <= 1000) objects
%%%                                with ets:select/3; Cont is undefined or the
%%%                                binary of the previous page (term_to_binary
%%%                                of the continuation, checked on the way
%%%                                back with binary_to_term(_, [safe]) and
%%%                                ets:repair_continuation/2)
%%%   modules(Opts)                loaded modules with md5, old code flag and
%%%                                path: prefix (binary), only_old_code,
%%%                                limit (1000, <= 20000)
%%%   soft_purge(Module | all, Opts)  code:soft_purge/1 of a module, or of
%%%                                every module that has old code: what was
%%%                                purged, what is still in use
%%%   get_env(App, Key | all, Opts)  application env, printed
%%%   set_env(App, Key, Value, Opts)  Value is Erlang term text (parsed, never
%%%                                evaluated); persistent => true|false
%%%   env_dump(Apps | all, Opts)   #{App => #{Key => #{hash, text}}} for
%%%                                comparing nodes (<= 200 apps, 500 keys)
%%%   eval(Expr, Opts)             erl_scan/erl_parse/erl_eval in a spawned
%%%                                process: timeout_ms (5000, <= 60000),
%%%                                max_heap_words (4 Mi words), output of
%%%                                io:format captured (<= 64 KB)
%%%
%%% Text limits: depth (20, <= 100) and chars (4096, <= 65536) options apply
%%% to every printed term, except where a function says otherwise.
%%%
%%% Stopping processes (terminate/3, terminate_shells/1; eval is not checked)
%%% --------------------------------------------------------------------------
%%% An operator call must never stop the node or an application.  Before the
%%% exit signal is sent, may_stop/2 works out the set of processes that would
%%% die with the target -- the target, every linked local process that does not
%%% trap exits, and every linked process whose parent ('$ancestors') dies (an
%%% OTP process stops when its parent does), transitively -- and refuses, with
%%% a message naming the process and the rule, when
%%%   1. the target is a supervisor (supervisor, supervisor_bridge, RabbitMQ's
%%%      supervisor2, Elixir's Supervisor, DynamicSupervisor and
%%%      Task.Supervisor: '$initial_call') of a running
%%%      application (its group leader is that application's master): the top
%%%      supervisor (its parent is the master) or one in the tree below;
%%%   2. any process of the set is
%%%        - init, or a system process of the runtime;
%%%        - an application master (both of its processes: application_master
%%%          init/4 and start_it/4) of any running application;
%%%        - registered under one of the names of ?PROTECTED (kernel, logger,
%%%          the distribution, the I/O servers) or as beamside_*, or running
%%%          a beamside_* module (initial call);
%%%        - a process of a system application (?SYSTEM_APPS: kernel, stdlib,
%%%          sasl, os_mon, compiler, elixir, logger), registered or not (their
%%%          supervisors allow no or few restarts: kernel_sup one_for_all 0/1);
%%%        - the group leader of another process (user, user_drv's groups,
%%%          standard_error, a shell's I/O server, application masters);
%%%   3. a supervisor outside the set that loses children in it (a linked
%%%      supervisor holding one of them in its child specs or dynamic
%%%      children) would give up: the restarts that need (permanent and
%%%      transient children: the kill is abnormal; temporary: none) plus
%%%      those of its last Period seconds exceed its intensity, or a child is
%%%      significant and the supervisor has auto_shutdown; its state is read
%%%      with sys:get_state (1 s; unreadable -> refused when it is the parent);
%%%   4. the check cannot be completed: more than ?MAX_DYING processes in the
%%%      set, more than ?MAX_LINKS links on one of them or ?MAX_LOOKS in all,
%%%      the walk over all processes for group leaders or the whole check past
%%%      its deadline (check_ms), or the helper over its heap limit.
%%% So an ordinary worker can be killed (that is what supervisors are for),
%%% including a worker of a permanent application, while its supervisor has
%%% room; a process that is no part of an application (spawned from a shell)
%%% too, unless a rule above says otherwise.  Not followed: links to other
%%% nodes, monitors, and trapping linked processes that are neither the
%%% parent's supervisor nor children (they get an 'EXIT' message; what they
%%% do with it is their code's business).  The rules hold for any exit
%%% reason (a process trapping exits may survive a soft one).
%%% ===========================================================================
-module(beamside_ops).

-export([node_info/1, top/1, process/2, terminate/3, gc/2, terminate_shells/1,
         tables/1, read_table/3, modules/1, soft_purge/2,
         get_env/3, set_env/4, env_dump/2, eval/2]).
%% Spawned helpers (io capture).
-export([capture_loop/2]).

-define(MAX_TOP, 1000).
-define(CHECK_EVERY, 512).
-define(MAX_LIST, 100).               % links, monitors, dictionary entries shown
-define(HELPER_HEAP, 16#800000).      % words (64 MB) for helpers that copy terms
-define(MAX_OUTPUT, 65536).
-define(GC_WAIT, 5000).            % ms a batch waits for its collections
-define(CHECK_MS, 3000).           % the safety check of a stop: default deadline
-define(SUP_STATE_MS, 1000).       % sys:get_state of a supervisor
-define(MAX_DYING, 200).           % processes that may die with the one asked for
-define(MAX_LINKS, 10000).         % links of one process looked at
-define(MAX_LOOKS, 20000).         % linked processes looked at in all
-define(SYSTEM_APPS, [kernel, stdlib, sasl, os_mon, compiler, erts, elixir, logger]).
-define(PROTECTED, [init, erl_prim_loader, erts_code_purger, code_server,
                    application_controller, kernel_sup, kernel_safe_sup, kernel_refc,
                    net_kernel, net_sup, erl_epmd, auth, rex, global_name_server,
                    global_group, global_group_check, inet_db, erl_signal_server,
                    file_server_2, logger, logger_sup, logger_handler_watcher,
                    logger_proxy, user, user_drv, standard_error, standard_error_sup,
                    socket_registry, erl_distribution, beamside_sysmon,
                    literal_area_collector, dist_util]).

-type reply(T) :: {ok, T} | {error, {atom(), binary()}}.

%%% ---------------------------------------------------------------------------
%%% node

-spec node_info(map()) -> reply(map()).
node_info(Opts) when is_map(Opts) ->
    Apps = try application:which_applications(1000)
           catch _:_ -> []
           end,
    Info = [{otp_release, fun() -> erlang:system_info(otp_release) end},
            {erts_version, fun() -> erlang:system_info(version) end},
            {system_architecture, fun() -> erlang:system_info(system_architecture) end},
            {emulator_flavor, fun() -> erlang:system_info(emu_flavor) end},
            {wordsize, fun() -> erlang:system_info(wordsize) end},
            {schedulers, fun() -> erlang:system_info(schedulers) end},
            {schedulers_online, fun() -> erlang:system_info(schedulers_online) end},
            {logical_processors, fun() -> erlang:system_info(logical_processors) end},
            {process_count, fun() -> erlang:system_info(process_count) end},
            {process_limit, fun() -> erlang:system_info(process_limit) end},
            {port_count, fun() -> erlang:system_info(port_count) end},
            {port_limit, fun() -> erlang:system_info(port_limit) end},
            {atom_count, fun() -> erlang:system_info(atom_count) end},
            {atom_limit, fun() -> erlang:system_info(atom_limit) end},
            {ets_count, fun() -> erlang:system_info(ets_count) end},
            {ets_limit, fun() -> erlang:system_info(ets_limit) end},
            {memory_total, fun() -> erlang:memory(total) end},
            {memory_processes, fun() -> erlang:memory(processes) end},
            {memory_ets, fun() -> erlang:memory(ets) end},
            {memory_binary, fun() -> erlang:memory(binary) end},
            {memory_atom, fun() -> erlang:memory(atom) end},
            {memory_code, fun() -> erlang:memory(code) end},
            {uptime_ms, fun() -> element(1, erlang:statistics(wall_clock)) end},
            {os_pid, fun() -> os:getpid() end},
            {os_type, fun() -> os:type() end},
            {dist_nodes, fun() -> length(nodes()) end},
            {net_ticktime, fun() -> net_kernel:get_net_ticktime() end},
            {loaded_modules, fun() -> length(code:all_loaded()) end},
            {boot_script, fun() -> init:script_id() end}],
    System = maps:from_list([{K, safe_text(F, Opts)} || {K, F} <- Info]),
    {ok, #{system => System,
           applications => [#{name => atom_to_binary(A, utf8),
                              version => bin(V),
                              description => bin(D)}
                            || {A, D, V} <- lists:sort(Apps)]}};
node_info(_) ->
    bad_opts().

safe_text(F, Opts) ->
    try F() of
        V when is_list(V) -> bin(V);
        V -> text(V, Opts)
    catch C:R -> text({C, R}, Opts)
    end.

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
                     dictionary => [#{key => text(K, Opts), value => text(V, Opts)}
                                    || {K, V} <- lists:sublist(Dict, ?MAX_LIST)],
                     dictionary_size => length(Dict)},
            Msgs = messages(P, maps:get(message_queue_len, M), Opts),
            State = case maps:get(state, Opts, true) of
                        false -> #{state_error => <<"not asked">>};
                        _ -> state(P, Dict, maps:get(initial_call, M), Opts)
                    end,
            {ok, maps:merge(maps:merge(Base, Msgs), State)};
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
                               {messages, Ms} -> [text(X, Opts) || X <- lists:sublist(Ms, N)];
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
    OTP = lists:keymember('$initial_call', 1, Dict) orelse mod_of(IC) =:= proc_lib,
    case OTP of
        false ->
            #{state_error => <<"not an OTP process (sys:get_state not attempted)">>};
        true ->
            T = int(state_timeout_ms, Opts, 1000, 1, 10000),
            Get = fun() -> text(sys:get_state(P, T), state_opts(Opts)) end,
            case bounded(Get, T + 500, [{max_heap_size, #{size => ?HELPER_HEAP, kill => true,
                                                            error_logger => false}}]) of
                {ok, Text} ->
                    #{state => Text};
                {error, {raised, exit, {timeout, _}}} ->
                    #{state_error => timeout_text(T)};
                {error, timeout} ->
                    #{state_error => timeout_text(T)};
                {error, {raised, exit, {Why, {sys, get_state, _}}}} ->
                    #{state_error => text(Why, Opts)};
                {error, Why} ->
                    #{state_error => text(Why, Opts)}
            end
    end.

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
                             case check_stop(P, Opts) of
                                 ok -> terminate_(P, Reason, Opts);
                                 {refused, Why} -> precondition(Why)
                             end
                     end);
terminate(_, _, _) ->
    bad_opts().

%% may_stop/2 in a helper with a deadline (check_ms) and a heap limit.
check_stop(P, Opts) ->
    CheckMs = int(check_ms, Opts, ?CHECK_MS, 100, 10000),
    Caller = self(),
    Check = fun() ->
                    Deadline = erlang:monotonic_time()
                        + erlang:convert_time_unit(CheckMs, millisecond, native),
                    may_stop(P, protect_ctx(Deadline, Caller))
            end,
    case bounded(Check, CheckMs + 1000, [{max_heap_size, #{size => ?HELPER_HEAP, kill => true,
                                                           error_logger => false}}]) of
        {ok, ok} ->
            ok;
        {ok, {refused, _} = R} ->
            R;
        {error, timeout} ->
            {refused, iolist_to_binary(io_lib:format("refused: the safety check did not finish "
                                                     "within ~b ms", [CheckMs + 1000]))};
        {error, Why} ->
            {refused, iolist_to_binary(["refused: the safety check failed: ",
                                        text(Why, #{depth => 8, chars => 300})])}
    end.

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
                  Ctx = protect_ctx(Deadline, Caller),
                  Allowed = [S || #{pid := P} = S <- lists:sublist(Ordered, 1000),
                                  may_stop(P, Ctx) =:= ok],
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
%%% protection: what an operator call may stop (see "Stopping processes" above)

%% The context of one check (or of one terminate_shells run): the application
%% masters by pid, the group leaders, the deadline, a budget of looks.
protect_ctx(Deadline, Caller) ->
    Masters = try maps:from_list([{P, A} || [A, P] <- ets:match(ac_tab, {{application_master, '$1'}, '$2'}),
                                            is_pid(P)])
              catch _:_ -> #{}
              end,
    #{masters => Masters, gls => group_leaders(Deadline), deadline => Deadline,
      caller => Caller}.

%% Every process that is the group leader of another process: one walk, with
%% the deadline ({unknown, Walked} when it ran out).
group_leaders(Deadline) ->
    group_leaders(erlang:processes(), ?CHECK_EVERY, Deadline, #{}, 0).

group_leaders([], _, _, Acc, _) ->
    Acc;
group_leaders(Ps, 0, Deadline, Acc, Walked) ->
    case erlang:monotonic_time() > Deadline of
        true -> {unknown, Walked};
        false -> group_leaders(Ps, ?CHECK_EVERY, Deadline, Acc, Walked)
    end;
group_leaders([P | Ps], N, Deadline, Acc, Walked) ->
    case erlang:process_info(P, group_leader) of
        {group_leader, GL} when GL =/= P, node(GL) =:= node() ->
            group_leaders(Ps, N - 1, Deadline, Acc#{GL => P}, Walked + 1);
        _ ->
            group_leaders(Ps, N - 1, Deadline, Acc, Walked + 1)
    end.

%% ok | {refused, Why}: may P be stopped (exit(P, _))?  The reason does not
%% matter: the rules assume the worst (the process and its links die).  Runs within the
%% context's deadline; anything it cannot establish is a refusal.
may_stop(P, #{caller := Caller}) when P =:= self(); P =:= Caller ->
    refused([describe(P), " is the process serving this call"]);
may_stop(P, Ctx) ->
    try
        case proc(P) of
            undefined ->
                ok;                                 % gone already: nothing to protect
            Info ->
                case target_refusal(Info, Ctx) of
                    false -> dying(Info, Ctx);
                    Why -> refused(Why)
                end
        end
    catch
        throw:{refused, Text} -> refused(Text);
        C:R -> refused(io_lib:format("the check failed (~0tP)", [{C, R}, 8]))
    end.

refused(Text) ->
    {refused, iolist_to_binary(["refused: ", Text])}.

%% What a process is, for the rules: map or undefined (exited).
proc(P) ->
    case erlang:process_info(P, [registered_name, initial_call, group_leader, trap_exit,
                                 links, dictionary]) of
        [{registered_name, Name}, {initial_call, IC}, {group_leader, GL}, {trap_exit, Trap},
         {links, Links}, {dictionary, Dict}] ->
            Anc = case lists:keyfind('$ancestors', 1, Dict) of
                      {_, [A | _]} when is_pid(A) -> A;
                      {_, [A | _]} when is_atom(A) -> whereis(A);
                      _ -> undefined
                  end,
            DIC = case lists:keyfind('$initial_call', 1, Dict) of
                      {_, {_, _, _} = MFA} -> MFA;
                      _ -> IC
                  end,
            #{pid => P, name => Name, ic => IC, dic => DIC, gl => GL, trap => Trap,
              links => Links, parent => Anc};
        undefined ->
            undefined
    end.

kind(#{ic := {application_master, start_it, _}}) -> master_loop;
kind(#{dic := {application_master, init, _}}) -> master;
kind(#{dic := {supervisor, _, _}}) -> supervisor;
kind(#{dic := {supervisor2, _, _}}) -> supervisor;     % RabbitMQ's fork, same #state{}
kind(#{dic := {supervisor_bridge, _, _}}) -> bridge;
kind(#{dic := {'Elixir.DynamicSupervisor', _, _}}) -> supervisor;
kind(_) -> other.

app_of(#{pid := P, gl := GL}, #{masters := M}) ->
    case maps:find(P, M) of
        {ok, A} -> A;
        error -> maps:get(GL, M, undefined)
    end.

%% The rules for the process asked for, beyond those of every process that
%% would die with it (member_refusal/2): a supervisor of a running application.
target_refusal(Info, Ctx) ->
    case member_refusal(Info, Ctx) of
        false ->
            case {kind(Info), app_of(Info, Ctx)} of
                {K, App} when (K =:= supervisor orelse K =:= bridge), App =/= undefined ->
                    Top = case proc_kind(maps:get(parent, Info)) of
                              master_loop -> "the top supervisor";
                              _ -> "a supervisor"
                          end,
                    [describe(Info), " is ", Top, " of application ", app_text(App),
                     "; stopping it would stop the application or its subtree"];
                _ ->
                    false
            end;
        Why ->
            Why
    end.

proc_kind(P) when is_pid(P) ->
    case proc(P) of
        undefined -> undefined;
        I -> kind(I)
    end;
proc_kind(_) ->
    undefined.

%% false, or why a process must not die (whether asked for or taken down by links).
member_refusal(#{pid := P, name := Name} = Info, #{gls := GLs} = Ctx) ->
    System = try erts_internal:is_system_process(P)
             catch _:_ -> false
             end,
    Kind = kind(Info),
    App = app_of(Info, Ctx),
    Ours = ours(maps:get(ic, Info)) orelse ours(maps:get(dic, Info)),
    if
        Name =:= init ->
            [describe(Info), " is init: stopping it stops the node"];
        System =:= true ->
            [describe(Info), " is a system process of the runtime"];
        Kind =:= master; Kind =:= master_loop ->
            [describe(Info), " is the application master of ", app_text(App)];
        is_atom(Name), Name =/= [] ->
            case lists:member(Name, ?PROTECTED) orelse beamside_name(Name) of
                true -> [describe(Info), " is the system process ", atom_to_list(Name)];
                false -> system_app(Info, App, GLs)
            end;
        Ours ->
            [describe(Info), " is a process of beamside's agent"];
        true ->
            system_app(Info, App, GLs)
    end.

system_app(#{pid := P} = Info, App, GLs) ->
    case lists:member(App, ?SYSTEM_APPS) of
        true ->
            [describe(Info), " belongs to ", atom_to_list(App), ", a system application"];
        false ->
            case GLs of
                {unknown, Walked} ->
                    [describe(Info), " might be a group leader: the check ran out of time after ",
                     integer_to_list(Walked), " processes"];
                #{P := Led} ->
                    [describe(Info), " is the group leader (I/O server) of ", describe(Led),
                     " and maybe others"];
                _ ->
                    false
            end
    end.

ours({M, _, _}) when is_atom(M) -> beamside_name(M);
ours(_) -> false.

beamside_name(Name) ->
    case atom_to_binary(Name, utf8) of
        <<"beamside_", _/binary>> -> true;
        _ -> false
    end.

%% Every process that dies with the target (through links: those not trapping
%% exits, and those whose parent dies), at most ?MAX_DYING; each must pass
%% member_refusal/2; then every supervisor outside that set losing a child
%% must have room for the restarts.
dying(Info, Ctx) ->
    {Dying, Sups} = spread([{Info, target}], #{}, #{}, ?MAX_LOOKS, Ctx),
    Members = maps:values(Dying),
    case first([fun() -> member_check(I, Via, Ctx) end || {I, Via} <- Members,
                                                          Via =/= target]) of
        false ->
            case first([fun() -> sup_check(S, Kids, Dying, Ctx) end
                        || {S, Kids} <- maps:to_list(Sups), not maps:is_key(S, Dying)]) of
                false -> ok;
                Why -> refused(Why)
            end;
        Why ->
            refused(Why)
    end.

first([]) -> false;
first([F | Fs]) ->
    case F() of
        false -> first(Fs);
        Why -> Why
    end.

member_check(Info, Via, Ctx) ->
    case member_refusal(Info, Ctx) of
        false -> false;
        Why -> [via(Info, Via), Why]
    end.

via(I, {link, From}) ->
    [describe(I), " is linked to ", describe(From),
     " and does not trap exits, so it would die too; "];
via(I, {child, From}) ->
    [describe(I), " would stop too (its parent ", describe(From), " dies); "];
via(I, {bridge, From}) ->
    ["the supervisor bridge ", describe(I), " would stop with its child ", describe(From), "; "].

via_of(#{pid := P}, Dying) ->
    case maps:get(P, Dying, undefined) of
        {I, Via} when Via =/= target -> via(I, Via);
        _ -> []
    end.

spread([], Dying, Sups, _, _) ->
    {Dying, Sups};
spread([{#{pid := P} = Info, Via} | Rest], Dying, Sups, Looks, Ctx) ->
    case maps:is_key(P, Dying) of
        true ->
            spread(Rest, Dying, Sups, Looks, Ctx);
        false ->
            map_size(Dying) < ?MAX_DYING orelse
                throw({refused, [describe(Info), " would take more than ",
                                 integer_to_list(?MAX_DYING), " linked processes down with it"]}),
            deadline(Ctx, Info),
            Links = [L || L <- maps:get(links, Info), is_pid(L), node(L) =:= node(),
                          not maps:is_key(L, Dying)],
            Count = length(Links),
            Count =< ?MAX_LINKS orelse
                throw({refused, [describe(Info), " has ", integer_to_list(Count),
                                 " links, too many to check"]}),
            Looks >= Count orelse
                throw({refused, [describe(Info), ": too many linked processes to check"]}),
            Dying1 = Dying#{P => {Info, Via}},
            {More, Sups1} = lists:foldl(fun(L, Acc) -> linked(L, Info, Acc) end,
                                        {[], Sups}, Links),
            spread(Rest ++ More, Dying1, Sups1, Looks - Count, Ctx)
    end.

%% What happens to L, linked to the dying process From.
linked(L, #{pid := From} = FromInfo, {More, Sups}) ->
    case proc(L) of
        undefined ->
            {More, Sups};
        #{trap := false} = LI ->
            {[{LI, {link, FromInfo}} | More], Sups};
        #{parent := From} = LI ->
            {[{LI, {child, FromInfo}} | More], Sups};
        LI ->
            case {kind(LI), maps:get(parent, FromInfo)} of
                {bridge, L} -> {[{LI, {bridge, FromInfo}} | More], Sups};
                {supervisor, _} ->
                    {_, Kids} = maps:get(L, Sups, {LI, []}),
                    {More, Sups#{L => {LI, [FromInfo | Kids]}}};
                _ -> {More, Sups}                   % traps exits: gets a message
            end
    end.

remaining_ms(#{deadline := D}) ->
    erlang:convert_time_unit(D - erlang:monotonic_time(), native, millisecond).

deadline(#{deadline := D}, Info) ->
    erlang:monotonic_time() =< D orelse
        throw({refused, ["the check of ", describe(Info), " ran out of time"]}).

%% false, or why the supervisor S cannot take the loss of Kids (its children
%% among the dying processes; other linked processes are ignored).
sup_check(S, {SInfo, Kids}, Dying, Ctx) ->
    deadline(Ctx, SInfo),
    State = try sys:get_state(S, max(10, min(?SUP_STATE_MS, remaining_ms(Ctx))))
            catch _:_ -> unreadable
            end,
    case sup_flags(State) of
        {ok, Intensity, Period, Restarts, AutoShutdown, ChildOf} ->
            Now = erlang:monotonic_time(second),
            Recent = length([R || R <- Restarts, not is_integer(R) orelse R > Now - Period]),
            Children = [{K, ChildOf(maps:get(pid, K))} || K <- Kids],
            Significant = [K || {K, {_, true}} <- Children, AutoShutdown =/= never],
            Needed = length([K || {K, {Type, _}} <- Children, Type =/= temporary]),
            case Significant of
                [K | _] ->
                    [via_of(K, Dying), describe(K), " is a significant child of ", describe(SInfo),
                     " (auto_shutdown ", atom_to_list(AutoShutdown),
                     "): the supervisor would shut down", sup_app(SInfo, Ctx)];
                [] when Needed > 0, Recent + Needed > Intensity ->
                    [K | _] = [K || {K, {Type, _}} <- Children, Type =/= temporary],
                    [via_of(K, Dying), describe(K), ": its supervisor ", describe(SInfo), " allows ",
                     integer_to_list(Intensity), " restart(s) in ", integer_to_list(Period),
                     " s and has used ", integer_to_list(Recent),
                     "; restarting it would exceed that and the supervisor would exit",
                     sup_app(SInfo, Ctx)];
                [] ->
                    false
            end;
        error ->
            case [K || K <- Kids, maps:get(parent, K) =:= S] of
                [] -> false;                          % not its children
                [K | _] -> [via_of(K, Dying), describe(K),
                            ": the restart intensity of its supervisor ",
                            describe(SInfo), " could not be read"]
            end
    end.

sup_app(SInfo, Ctx) ->
    case app_of(SInfo, Ctx) of
        undefined -> [];
        App -> [", taking down part or all of application ", app_text(App)]
    end.

%% {ok, Intensity, Period, Restarts, AutoShutdown, ChildOf} of an OTP
%% supervisor (#state{}: the positions of name .. restarts are the same from
%% OTP 21 to 28) or an Elixir DynamicSupervisor; ChildOf(Pid) is
%% {RestartType, Significant} or {temporary, false} for a non-child.
sup_flags(State) when is_tuple(State), tuple_size(State) >= 11, element(1, State) =:= state,
                      is_integer(element(6, State)), is_integer(element(7, State)),
                      is_list(element(8, State)) ->
    {_Ids, Db} = case element(4, State) of
                     {I, D} when is_map(D) -> {I, D};
                     L when is_list(L) -> {[], maps:from_list([{X, X} || X <- L])};
                     _ -> {[], #{}}
                 end,
    Recs = [C || C <- maps:values(Db), is_tuple(C), tuple_size(C) >= 8, element(1, C) =:= child],
    Dyn = case element(5, State) of
              {maps, M} when is_map(M) -> fun(P) -> maps:is_key(P, M) end;
              {mapsets, M} when is_map(M) -> fun(P) -> maps:is_key(P, M) end;
              {sets, Set} -> fun(P) -> try sets:is_element(P, Set) catch _:_ -> false end end;
              _ -> fun(_) -> false end
          end,
    Auto = case [A || A <- tl(tuple_to_list(State)),
                      A =:= never orelse A =:= any_significant orelse A =:= all_significant] of
               [A | _] -> A;
               [] -> never
           end,
    ChildOf = fun(P) ->
                      case [C || C <- Recs, element(2, C) =:= P] of
                          [C | _] -> child_type(C);
                          [] ->
                              case {Dyn(P), Recs} of
                                  {true, [C | _]} -> child_type(C);
                                  _ -> {temporary, false}
                              end
                      end
              end,
    {ok, element(6, State), element(7, State), element(8, State), Auto, ChildOf};
sup_flags(#{'__struct__' := 'Elixir.DynamicSupervisor', children := Kids,
            max_restarts := I, max_seconds := P, restarts := R})
  when is_map(Kids), is_integer(I), is_integer(P), is_list(R) ->
    ChildOf = fun(Pid) ->
                      case maps:find(Pid, Kids) of
                          {ok, T} when is_tuple(T), tuple_size(T) >= 2 -> {element(2, T), false};
                          _ -> {temporary, false}
                      end
              end,
    {ok, I, P, R, never, ChildOf};
sup_flags(_) ->
    error.

child_type(C) when tuple_size(C) >= 9 -> {restart_kind(element(5, C)), element(6, C) =:= true};
child_type(C) -> {restart_kind(element(5, C)), false}.

restart_kind(temporary) -> temporary;
restart_kind(transient) -> transient;
restart_kind(_) -> permanent.                % permanent, {permanent, Delay} (OTP 28?)

%% "App (permanent)": the restart type from application_controller (asked
%% with a time limit; left out when it does not answer).
app_text(undefined) ->
    "(none)";
app_text(App) ->
    Type = case bounded(fun() -> application:info() end, 500, []) of
               {ok, Info} when is_list(Info) ->
                   case lists:keyfind(started, 1, Info) of
                       {started, Started} when is_list(Started) ->
                           case lists:keyfind(App, 1, Started) of
                               {_, T} when is_atom(T) -> [" (", atom_to_list(T), ")"];
                               _ -> []
                           end;
                       _ -> []
                   end;
               _ -> []
           end,
    [atom_to_list(App), Type].

describe(#{pid := P, name := Name}) when is_atom(Name), Name =/= [] ->
    [pid_to_list(P), " (", atom_to_list(Name), ")"];
describe(#{pid := P}) ->
    pid_to_list(P);
describe(P) when is_pid(P) ->
    case erlang:process_info(P, registered_name) of
        {registered_name, N} when is_atom(N) -> [pid_to_list(P), " (", atom_to_list(N), ")"];
        _ -> pid_to_list(P)
    end.

%%% ---------------------------------------------------------------------------
%%% ETS

-spec tables(map()) -> reply(map()).
tables(Opts) when is_map(Opts) ->
    case maps:get(order_by, Opts, memory) of
        Order when Order =:= memory; Order =:= size; Order =:= name; Order =:= id ->
            Limit = int(limit, Opts, 100, 1, 10000),
            TimeoutMs = int(timeout_ms, Opts, 5000, 100, 60000),
            run(fun() -> tables_(Order, Limit, Opts) end, TimeoutMs, []);
        _ ->
            invalid(<<"order_by must be memory, size, name or id">>)
    end;
tables(_) ->
    bad_opts().

tables_(Order, Limit, Opts) ->
    Infos = lists:filtermap(fun table_info/1, ets:all()),
    Key = case Order of
              memory -> fun(#{memory := M, id := I}) -> {-M, I} end;
              size -> fun(#{size := S, id := I}) -> {-S, I} end;
              name -> fun(#{name := N, id := I}) -> {N, I} end;
              id -> fun(#{id := I}) -> I end
          end,
    Sorted = [T || {_, T} <- lists:sort([{Key(T), T} || T <- Infos])],
    Chosen = lists:sublist(Sorted, Limit),
    Words = erlang:system_info(wordsize),
    #{tables => [describe_table(T, Words, Opts) || T <- Chosen],
      total => length(Infos)}.

table_info(T) ->
    case ets:info(T) of
        undefined ->
            false;
        Info ->
            P = fun(K) -> proplists:get_value(K, Info) end,
            {true, #{id => P(id), name => P(name), type => P(type), size => P(size),
                     memory => P(memory), owner => P(owner), protection => P(protection),
                     named_table => P(named_table)}}
    end.

describe_table(#{id := Id, name := Name, owner := Owner} = T, Words, _Opts) ->
    OwnerName = case erlang:process_info(Owner, registered_name) of
                    {registered_name, N} when is_atom(N) -> atom_to_binary(N, utf8);
                    _ -> <<>>
                end,
    #{id => tid_text(Id),
      name => atom_to_binary(Name, utf8),
      type => atom_to_binary(maps:get(type, T), utf8),
      size => maps:get(size, T),
      memory_words => maps:get(memory, T),
      memory_bytes => maps:get(memory, T) * Words,
      owner_pid => pid_text(Owner),
      owner_name => OwnerName,
      protection => atom_to_binary(maps:get(protection, T), utf8),
      named_table => maps:get(named_table, T)}.

tid_text(Id) when is_reference(Id) -> list_to_binary(ref_to_list(Id));
tid_text(Id) -> iolist_to_binary(io_lib:format("~0tp", [Id])).

-spec read_table(binary(), binary() | undefined, map()) -> reply(map()).
read_table(Table, Cont, Opts) when is_binary(Table), is_map(Opts) ->
    case resolve_table(Table) of
        {ok, Tab} ->
            case {ets:info(Tab, protection), ets:info(Tab, owner)} of
                {undefined, _} ->
                    not_found(<<"no such table">>);
                {private, Owner} when Owner =/= self() ->
                    precondition(<<"the table is private: only its owner can read it">>);
                _ ->
                    Limit = int(limit, Opts, 100, 1, 1000),
                    RowOpts = Opts#{chars => int(chars, Opts, 1000, 16, 2000)},
                    read_page(Tab, Cont, Limit, RowOpts)
            end;
        {error, _} = E ->
            E
    end;
read_table(_, _, _) ->
    bad_opts().

-define(MATCH_ALL, [{'_', [], ['$_']}]).

read_page(Tab, Cont, Limit, Opts) ->
    Page = try
               case Cont of
                   undefined ->
                       {ok, ets:select(Tab, ?MATCH_ALL, Limit)};
                   Bin when is_binary(Bin) ->
                       C = ets:repair_continuation(binary_to_term(Bin, [safe]), ?MATCH_ALL),
                       case continuation_table(C) of
                           {ok, CT} ->
                               case same_table(CT, Tab) of
                                   true -> {ok, ets:select(C)};
                                   false -> {error, other_table}
                               end;
                           error ->
                               {error, bad}
                       end
               end
           catch _:_ -> {error, bad}
           end,
    case Page of
        {ok, '$end_of_table'} ->
            {ok, #{rows => [], continuation => undefined, size => size_of(Tab)}};
        {ok, {Objects, Next}} ->
            NextBin = case Next of
                          '$end_of_table' -> undefined;
                          _ -> term_to_binary(Next)
                      end,
            {ok, #{rows => [text(O, Opts) || O <- Objects],
                   continuation => NextBin, size => size_of(Tab)}};
        {error, other_table} ->
            invalid(<<"the continuation belongs to another table">>);
        {error, bad} ->
            invalid(<<"the continuation is not one this table gave">>)
    end.

continuation_table(C) when is_tuple(C), tuple_size(C) >= 2 -> {ok, element(1, C)};
continuation_table(_) -> error.

same_table(A, A) -> true;
same_table(A, B) -> ets:info(A, id) =:= ets:info(B, id) andalso ets:info(A, id) =/= undefined.

size_of(Tab) ->
    case ets:info(Tab, size) of
        undefined -> 0;
        S -> S
    end.

%% A table by name (named tables) or by its printed id (#Ref<...>).
resolve_table(<<"#Ref<", _/binary>> = Text) ->
    try list_to_ref(binary_to_list(Text)) of
        Ref -> {ok, Ref}
    catch error:badarg -> invalid(<<"not a table id: ", Text/binary>>)
    end;
resolve_table(Text) ->
    case string:to_integer(binary_to_list(Text)) of
        {N, []} when is_integer(N) ->
            {ok, N};
        _ ->
            try binary_to_existing_atom(Text, utf8) of
                Name ->
                    case ets:info(Name, named_table) of
                        true -> {ok, Name};
                        _ -> not_found(<<"no named table ", Text/binary,
                                         " (an unnamed table is read by its id)">>)
                    end
            catch error:badarg ->
                    not_found(<<"no named table ", Text/binary>>)
            end
    end.

%%% ---------------------------------------------------------------------------
%%% code

-spec modules(map()) -> reply(map()).
modules(Opts) when is_map(Opts) ->
    Limit = int(limit, Opts, 1000, 1, 20000),
    Prefix = case maps:get(prefix, Opts, undefined) of
                 B when is_binary(B) -> B;
                 _ -> <<>>
             end,
    OnlyOld = maps:get(only_old_code, Opts, false) =:= true,
    Run = fun() ->
                  Loaded = lists:sort(code:all_loaded()),
                  Matching = [{M, F} || {M, F} <- Loaded, prefix(Prefix, M),
                                        not OnlyOld orelse erlang:check_old_code(M)],
                  Chosen = lists:sublist(Matching, Limit),
                  #{modules => [module_entry(M, F) || {M, F} <- Chosen],
                    total => length(Loaded),
                    matching => length(Matching)}
          end,
    run(Run, int(timeout_ms, Opts, 10000, 100, 60000), []);
modules(_) ->
    bad_opts().

prefix(<<>>, _) -> true;
prefix(P, M) ->
    B = atom_to_binary(M, utf8),
    binary:longest_common_prefix([P, B]) =:= byte_size(P).

module_entry(M, File) ->
    Md5 = try erlang:get_module_info(M, md5) of
              B when is_binary(B) -> hex(B);
              _ -> <<>>
          catch _:_ -> <<>>
          end,
    #{name => atom_to_binary(M, utf8),
      md5 => Md5,
      old_code => erlang:check_old_code(M),
      path => case File of
                  F when is_list(F) -> bin(F);
                  A when is_atom(A) -> atom_to_binary(A, utf8);
                  _ -> <<>>
              end}.

hex(Bin) -> << <<(hex_digit(N div 16)), (hex_digit(N rem 16))>> || <<N>> <= Bin >>.

hex_digit(N) when N < 10 -> $0 + N;
hex_digit(N) -> $a + N - 10.

-spec soft_purge(binary() | all, map()) -> reply(map()).
soft_purge(all, Opts) when is_map(Opts) ->
    Run = fun() ->
                  Old = [M || {M, _} <- lists:sort(code:all_loaded()),
                              erlang:check_old_code(M)],
                  purge_each(Old)
          end,
    run(Run, int(timeout_ms, Opts, 30000, 100, 600000), []);
soft_purge(Module, Opts) when is_binary(Module), is_map(Opts) ->
    try binary_to_existing_atom(Module, utf8) of
        M ->
            case code:is_loaded(M) of
                false -> not_found(<<"module ", Module/binary, " is not loaded">>);
                _ -> run(fun() -> purge_each([M || erlang:check_old_code(M)]) end,
                             int(timeout_ms, Opts, 30000, 100, 600000), [])
            end
    catch error:badarg ->
            not_found(<<"module ", Module/binary, " is not loaded">>)
    end;
soft_purge(_, _) ->
    bad_opts().

purge_each(Mods) ->
    {Purged, InUse} = lists:partition(fun code:soft_purge/1, Mods),
    #{purged => [atom_to_binary(M, utf8) || M <- Purged],
      in_use => [atom_to_binary(M, utf8) || M <- InUse]}.

%%% ---------------------------------------------------------------------------
%%% application env

-spec get_env(binary(), binary() | all, map()) -> reply(map()).
get_env(App, Key, Opts) when is_binary(App), is_map(Opts) ->
    case existing_atom(App) of
        error ->
            not_found(<<"no application ", App/binary>>);
        {ok, A} ->
            Env = case Key of
                      all ->
                          lists:sublist(lists:sort(application:get_all_env(A)), 500);
                      _ ->
                          case existing_atom(Key) of
                              {ok, K} ->
                                  case application:get_env(A, K) of
                                      {ok, V} -> [{K, V}];
                                      undefined -> []
                                  end;
                              error ->
                                  []
                          end
                  end,
            {ok, #{app => App, loaded => app_loaded(A),
                   entries => [#{key => atom_to_binary(K, utf8), value => text(V, Opts)}
                               || {K, V} <- Env]}}
    end;
get_env(_, _, _) ->
    bad_opts().

app_loaded(A) ->
    lists:keymember(A, 1, application:loaded_applications()).

-spec set_env(binary(), binary(), binary(), map()) -> reply(map()).
set_env(App, Key, Value, Opts) when is_binary(App), is_binary(Key), is_binary(Value),
                                    is_map(Opts) ->
    case existing_atom(App) of
        {ok, A} ->
            case app_loaded(A) of
                true -> set_env_(A, Key, Value, Opts);
                false -> not_found(<<"application ", App/binary, " is not loaded">>)
            end;
        error ->
            not_found(<<"application ", App/binary, " is not loaded">>)
    end;
set_env(_, _, _, _) ->
    bad_opts().

set_env_(A, Key, Value, Opts) ->
    case parse_term(Value) of
        {ok, V} ->
            K = binary_to_atom(Key, utf8),
            Previous = case application:get_env(A, K) of
                           {ok, P} -> text(P, Opts);
                           undefined -> undefined
                       end,
            Persistent = maps:get(persistent, Opts, false) =:= true,
            case application:set_env(A, K, V, [{persistent, Persistent}, {timeout, 5000}]) of
                ok -> {ok, #{previous => Previous, value => text(V, Opts)}};
                Other -> internal(text(Other, Opts))
            end;
        {error, Msg} ->
            invalid(<<"value is not an Erlang term: ", Msg/binary>>)
    end.

parse_term(Text) ->
    Chars = unicode:characters_to_list(Text),
    case is_list(Chars) andalso erl_scan:string(Chars) of
        false ->
            {error, <<"not valid UTF-8">>};
        {ok, [], _} ->
            {error, <<"empty value">>};
        {ok, Tokens0, End} ->
            Tokens = case lists:last(Tokens0) of
                         {dot, _} -> Tokens0;
                         _ -> Tokens0 ++ [{dot, End}]
                     end,
            case erl_parse:parse_term(Tokens) of
                {ok, T} -> {ok, T};
                {error, {_, Mod, Desc}} -> {error, bin(Mod:format_error(Desc))}
            end;
        {error, {_, Mod, Desc}, _} ->
            {error, bin(Mod:format_error(Desc))}
    end.

-spec env_dump([binary()] | all, map()) -> reply(map()).
env_dump(Apps, Opts) when is_map(Opts), (Apps =:= all orelse is_list(Apps)) ->
    Names = case Apps of
                all -> lists:sort([A || {A, _, _} <- application:loaded_applications()]);
                _ -> [A || B <- Apps, {ok, A} <- [existing_atom(B)]]
            end,
    TOpts = Opts#{chars => int(chars, Opts, 512, 16, 4096)},
    Dump = [{atom_to_binary(A, utf8),
             maps:from_list([{atom_to_binary(K, utf8),
                              #{hash => erlang:phash2(V), text => text(V, TOpts)}}
                             || {K, V} <- lists:sublist(lists:sort(application:get_all_env(A)),
                                                        500), is_atom(K)])}
            || A <- lists:sublist(Names, 200)],
    {ok, maps:from_list(Dump)};
env_dump(_, _) ->
    bad_opts().

existing_atom(B) when is_binary(B) ->
    try {ok, binary_to_existing_atom(B, utf8)}
    catch error:badarg -> error
    end;
existing_atom(_) ->
    error.

%%% ---------------------------------------------------------------------------
%%% eval

-spec eval(binary(), map()) -> reply(map()).
eval(Expr, Opts) when is_binary(Expr), is_map(Opts) ->
    case parse_exprs(Expr) of
        {ok, Exprs} ->
            TimeoutMs = int(timeout_ms, Opts, 5000, 1, 60000),
            MaxHeap = int(max_heap_words, Opts, 16#400000, 10000, 16#4000000),
            TOpts = Opts#{chars => int(chars, Opts, 65536, 16, 65536),
                          depth => int(depth, Opts, 50, 1, 100)},
            run_eval(Exprs, TimeoutMs, MaxHeap, TOpts);
        {error, Msg} ->
            invalid(<<"expression does not parse: ", Msg/binary>>)
    end;
eval(_, _) ->
    bad_opts().

parse_exprs(Text) ->
    Chars = unicode:characters_to_list(Text),
    case is_list(Chars) andalso erl_scan:string(Chars) of
        false ->
            {error, <<"not valid UTF-8">>};
        {ok, [], _} ->
            {error, <<"empty expression">>};
        {ok, Tokens0, End} ->
            Tokens = case lists:last(Tokens0) of
                         {dot, _} -> Tokens0;
                         _ -> Tokens0 ++ [{dot, End}]
                     end,
            case erl_parse:parse_exprs(Tokens) of
                {ok, Exprs} ->
                    {ok, Exprs};
                {error, {Loc, Mod, Desc}} ->
                    {error, iolist_to_binary([loc(Loc), bin(Mod:format_error(Desc))])}
            end;
        {error, {Loc, Mod, Desc}, _} ->
            {error, iolist_to_binary([loc(Loc), bin(Mod:format_error(Desc))])}
    end.

loc({Line, Col}) -> io_lib:format("line ~b, column ~b: ", [Line, Col]);
loc(Line) when is_integer(Line) -> io_lib:format("line ~b: ", [Line]);
loc(_) -> "".

run_eval(Exprs, TimeoutMs, MaxHeap, Opts) ->
    Parent = self(),
    Ref = make_ref(),
    T0 = erlang:monotonic_time(),
    Capture = spawn(?MODULE, capture_loop, [[], 0]),
    {Pid, MRef} =
        spawn_opt(fun() ->
                          group_leader(Capture, self()),
                          Reply = try erl_eval:exprs(Exprs, erl_eval:new_bindings()) of
                                      {value, V, _} -> {value, text(V, Opts)}
                                  catch C:R:St ->
                                          {exception, text({C, R, lists:sublist(St, 5)}, Opts)}
                                  end,
                          Parent ! {Ref, Reply}
                  end,
                  [monitor, {max_heap_size, #{size => MaxHeap, kill => true,
                                              error_logger => false}}]),
    Result = receive
                 {Ref, Reply} ->
                     erlang:demonitor(MRef, [flush]),
                     Reply;
                 {'DOWN', MRef, process, Pid, killed} ->
                     {exception, iolist_to_binary(
                                   io_lib:format("killed: the evaluation went over its heap "
                                                 "limit of ~b words", [MaxHeap]))};
                 {'DOWN', MRef, process, Pid, Why} ->
                     {exception, text({exit, Why}, Opts)}
             after TimeoutMs ->
                     exit(Pid, kill),
                     erlang:demonitor(MRef, [flush]),
                     receive {Ref, Late} -> Late
                     after 0 -> timeout
                     end
             end,
    Output = capture_text(Capture),
    Took = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    case Result of
        timeout ->
            timeout(iolist_to_binary(io_lib:format("the evaluation did not finish within ~b ms "
                                                   "(it was killed)", [TimeoutMs])));
        {value, Text} ->
            {ok, #{result => Text, output => Output, duration_us => Took}};
        {exception, Text} ->
            {ok, #{exception => Text, output => Output, duration_us => Took}}
    end.

capture_text(Capture) ->
    Ref = erlang:monitor(process, Capture),
    Capture ! {get, self(), Ref},
    receive
        {Ref, Text} ->
            erlang:demonitor(Ref, [flush]),
            Text;
        {'DOWN', Ref, process, _, _} ->
            <<>>
    after 1000 ->
            exit(Capture, kill),
            <<>>
    end.

%% A minimal io server: keeps what is written (bounded), answers reads with eof.
-spec capture_loop(iodata(), non_neg_integer()) -> ok.
capture_loop(Acc, Size) ->
    receive
        {io_request, From, ReplyAs, Req} ->
            {Reply, Acc1, Size1} = io_request(Req, Acc, Size),
            From ! {io_reply, ReplyAs, Reply},
            capture_loop(Acc1, Size1);
        {get, From, Ref} ->
            Bin = iolist_to_binary(lists:reverse(Acc)),
            From ! {Ref, truncate(Bin, ?MAX_OUTPUT)},
            ok;
        _ ->
            capture_loop(Acc, Size)
    after 120000 ->
            ok
    end.

io_request({put_chars, Enc, Chars}, Acc, Size) ->
    keep(unicode:characters_to_binary(Chars, Enc, utf8), Acc, Size);
io_request({put_chars, Enc, M, F, A}, Acc, Size) ->
    try keep(unicode:characters_to_binary(apply(M, F, A), Enc, utf8), Acc, Size)
    catch _:_ -> {{error, badarg}, Acc, Size}
    end;
io_request({put_chars, Chars}, Acc, Size) ->
    io_request({put_chars, latin1, Chars}, Acc, Size);
io_request({put_chars, M, F, A}, Acc, Size) ->
    io_request({put_chars, latin1, M, F, A}, Acc, Size);
io_request({requests, Reqs}, Acc, Size) ->
    lists:foldl(fun(R, {_, A, S}) -> io_request(R, A, S) end, {ok, Acc, Size}, Reqs);
io_request(getopts, Acc, Size) ->
    {[{binary, false}, {encoding, unicode}], Acc, Size};
io_request({get_geometry, _}, Acc, Size) ->
    {{error, enotsup}, Acc, Size};
io_request(_, Acc, Size) ->
    {eof, Acc, Size}.

keep(Bin, Acc, Size) when is_binary(Bin), Size < ?MAX_OUTPUT ->
    {ok, [Bin | Acc], Size + byte_size(Bin)};
keep(Bin, Acc, Size) when is_binary(Bin) ->
    {ok, Acc, Size};
keep(_, Acc, Size) ->
    {{error, badarg}, Acc, Size}.

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

%% Run Fun in a fresh process, killed after Timeout ms: {ok, Value} |
%% {error, {raised, Class, Reason}} | {error, {exit, Why}} | {error, timeout}.
bounded(Fun, Timeout, SpawnOpts) ->
    Parent = self(),
    Ref = make_ref(),
    {Pid, MRef} = spawn_opt(fun() ->
                                    Reply = try {ok, Fun()}
                                            catch C:R -> {error, {raised, C, R}}
                                            end,
                                    Parent ! {Ref, Reply}
                            end, [monitor | SpawnOpts]),
    receive
        {Ref, Reply} ->
            erlang:demonitor(MRef, [flush]),
            Reply;
        {'DOWN', MRef, process, Pid, Why} ->
            {error, {exit, Why}}
    after Timeout ->
            exit(Pid, kill),
            erlang:demonitor(MRef, [flush]),
            receive
                {Ref, Late} -> Late
            after 0 -> {error, timeout}
            end
    end.

%% bounded/3 as a reply for the sidecar.
run(Fun, Timeout, SpawnOpts) ->
    case bounded(Fun, Timeout, SpawnOpts) of
        {ok, {ok, _} = Ok} -> Ok;
        {ok, {error, {Kind, Msg}} = E} when is_atom(Kind), is_binary(Msg) -> E;
        {ok, V} -> {ok, V};
        {error, timeout} ->
            timeout(iolist_to_binary(io_lib:format("did not finish within ~b ms", [Timeout])));
        {error, {exit, killed}} ->
            internal(<<"the worker was killed (over its heap limit?)">>);
        {error, Why} ->
            internal(text(Why, #{}))
    end.

int(Key, Opts, Default, Min, Max) ->
    case maps:get(Key, Opts, Default) of
        V when is_integer(V) -> max(Min, min(Max, V));
        _ -> Default
    end.

%% Term as bounded text: ~0tP with depth, io_lib's chars_limit, then a hard cut.
text(T, Opts) ->
    Depth = int(depth, Opts, 20, 1, 100),
    Chars = int(chars, Opts, 4096, 16, 65536),
    S = try io_lib:format("~0tP", [T, Depth], [{chars_limit, Chars}])
        catch _:_ -> io_lib:format("~0P", [T, Depth], [{chars_limit, Chars}])
        end,
    B = case unicode:characters_to_binary(S) of
            Bin when is_binary(Bin) -> Bin;
            _ -> list_to_binary(io_lib:format("~0P", [T, Depth], [{chars_limit, Chars}]))
        end,
    truncate(B, Chars + 64).

texts(L, Opts) ->
    [text(X, Opts#{chars => int(chars, Opts, 256, 16, 4096)}) || X <- lists:sublist(L, ?MAX_LIST)].

truncate(Bin, Max) when byte_size(Bin) =< Max ->
    Bin;
truncate(Bin, Max) ->
    Part = binary:part(Bin, 0, max(0, Max - 3)),
    Good = case unicode:characters_to_binary(Part) of
               {incomplete, G, _} -> G;
               G when is_binary(G) -> G;
               _ -> Part
           end,
    <<Good/binary, "...">>.

pid_text(P) when is_pid(P) -> list_to_binary(pid_to_list(P));
pid_text(P) when is_port(P) -> list_to_binary(port_to_list(P));
pid_text(_) -> <<>>.

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

bin(B) when is_binary(B) -> B;
bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
bin(L) ->
    try unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    catch _:_ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    end.

invalid(Msg) -> {error, {invalid, Msg}}.
not_found(Msg) -> {error, {not_found, Msg}}.
precondition(Msg) -> {error, {precondition, Msg}}.
timeout(Msg) -> {error, {timeout, Msg}}.
internal(Msg) -> {error, {internal, Msg}}.
bad_opts() -> invalid(<<"bad arguments">>).
