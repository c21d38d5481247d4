%%% ===========================================================================
%%% beamside_ops_apps -- applications and their supervision trees: the
%%% Processes/ApplicationTree tool of the control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape and the rules every
%%% tool follows are in beamside_ops's header.
%%%
%%%   app_tree(App | all, Opts)  the running applications (one, or all of
%%%                              them) with their version, application
%%%                              master and top supervisor, and the
%%%                              supervision tree below it:
%%%       #{applications => [#{name, version, description, master, top,
%%%                            tree}], truncated}
%%%       tree: #{pid, name (registered, or <<>>), strategy (one_for_one |
%%%               ... | unknown), children => [Child], child_count,
%%%               truncated} where Child is #{id (printed), pid (or
%%%               restarting | undefined), name, type (worker | supervisor),
%%%               modules (printed), and, for a supervisor, its own tree
%%%               fields}
%%%   Bounds: max_depth (6, <= 20) levels of supervisors; max_children (100,
%%%   <= 1000) children listed per supervisor (a supervisor with more, such
%%%   as a simple_one_for_one one with a child per connection, is listed
%%%   with its child_count only, its which_children never asked); max_nodes
%%%   (2000, <= 20000) children in all; every call to a supervisor
%%%   (count_children, which_children, and sys:get_state for its restart
%%%   strategy) has call_ms (1000, <= 10000); the whole walk timeout_ms
%%%   (5000, <= 60000) in a helper process killed when it overruns.  A
%%%   supervisor that does not answer in time is listed with error =>
%%%   timeout, the walk goes on.
%%% ===========================================================================
-module(beamside_ops_apps).

-export([app_tree/2]).

-import(beamside_ops, [int/5, text/2, pid_text/1, existing_atom/1, run/3, not_found/1,
                       bad_opts/0]).

-define(ID_BYTES, 200).

-type reply(T) :: beamside_ops:reply(T).

-spec app_tree(binary() | all, map()) -> reply(map()).
app_tree(App, Opts) when is_map(Opts) ->
    Limits = #{depth => int(max_depth, Opts, 6, 1, 20),
               children => int(max_children, Opts, 100, 1, 1000),
               call => int(call_ms, Opts, 1000, 10, 10000)},
    Nodes = int(max_nodes, Opts, 2000, 1, 20000),
    Timeout = int(timeout_ms, Opts, 5000, 100, 60000),
    Running = application:which_applications(maps:get(call, Limits)),
    case pick(App, Running) of
        {error, _} = E ->
            E;
        Apps ->
            Deadline = erlang:monotonic_time(millisecond) + Timeout,
            run(fun() -> walk_apps(Apps, Limits#{deadline => Deadline}, Nodes) end,
                Timeout + 1000, [])
    end;
app_tree(_, _) ->
    bad_opts().

pick(all, Running) ->
    Running;
pick(Name, Running) when is_binary(Name) ->
    case existing_atom(Name) of
        {ok, A} ->
            case lists:keyfind(A, 1, Running) of
                false -> not_found(<<"no running application ", Name/binary>>);
                Found -> [Found]
            end;
        error ->
            not_found(<<"no running application ", Name/binary>>)
    end.

walk_apps(Apps, Limits, Nodes) ->
    {Out, Left} = lists:foldl(
                    fun({A, Desc, Vsn}, {Acc, N}) ->
                            {Entry, N1} = app(A, Desc, Vsn, Limits, N),
                            {[Entry | Acc], N1}
                    end, {[], Nodes}, Apps),
    {ok, #{applications => lists:reverse(Out), truncated => Left =< 0}}.

app(A, Desc, Vsn, Limits, N) ->
    Base = #{name => atom_to_binary(A, utf8), version => beamside_ops:bin(Vsn),
             description => text(Desc, #{chars => 200})},
    case application_controller:get_master(A) of
        Master when is_pid(Master) ->
            case top_supervisor(Master, Limits) of
                {ok, Top} ->
                    {Tree, N1} = tree(Top, 1, Limits, N),
                    {Base#{master => pid_text(Master), top => pid_text(Top), tree => Tree}, N1};
                {error, Why} ->
                    {Base#{master => pid_text(Master), error => Why}, N}
            end;
        _ ->
            {Base#{master => <<>>}, N}  % a library application: no processes
    end.

%% application_master:get_child/1 waits for ever: asked in a helper with a
%% time limit.
top_supervisor(Master, #{call := Ms}) ->
    case beamside_ops:bounded(fun() -> application_master:get_child(Master) end, Ms, []) of
        {ok, {Top, _Mod}} when is_pid(Top) -> {ok, Top};
        {ok, _} -> {error, no_top_supervisor};
        {error, timeout} -> {error, timeout};
        {error, _} -> {error, unreachable}
    end.

tree(Sup, Depth, #{depth := MaxDepth, children := MaxChildren, call := Ms,
                   deadline := Deadline} = Limits, N) ->
    Base = #{pid => pid_text(Sup), name => reg_name(Sup),
             strategy => strategy(Sup, Ms)},
    case call(Sup, count_children, Ms) of
        {ok, Counts} when is_list(Counts) ->
            Count = proplists:get_value(specs, Counts, 0),
            Active = proplists:get_value(active, Counts, 0),
            WithCount = Base#{child_count => Count, active => Active},
            case Count > MaxChildren orelse N =< 0 orelse Depth > MaxDepth
                orelse erlang:monotonic_time(millisecond) >= Deadline of
                true ->
                    {WithCount#{children => [], truncated => true}, N};
                false ->
                    case call(Sup, which_children, Ms) of
                        {ok, Children} when is_list(Children) ->
                            {Listed, N1} = children(Children, Depth, Limits, N),
                            {WithCount#{children => Listed, truncated => false}, N1};
                        {error, Why} ->
                            {WithCount#{children => [], error => Why}, N}
                    end
            end;
        {ok, _} ->
            {Base#{children => [], error => not_a_supervisor}, N};
        {error, Why} ->
            {Base#{children => [], error => Why}, N}
    end.

children([], _Depth, _Limits, N) ->
    {[], N};
children(_, _Depth, _Limits, N) when N =< 0 ->
    {[], N};
children([{Id, Child, Type, Mods} | Rest], Depth, Limits, N) ->
    Entry0 = #{id => text(Id, #{chars => ?ID_BYTES}), type => Type,
               pid => child_pid(Child), name => reg_name(Child),
               modules => modules(Mods)},
    {Entry, N1} = case {Type, is_pid(Child)} of
                      {supervisor, true} ->
                          {Tree, Nt} = tree(Child, Depth + 1, Limits, N - 1),
                          {maps:merge(Entry0, maps:remove(pid, Tree)), Nt};
                      _ ->
                          {Entry0, N - 1}
                  end,
    {More, N2} = children(Rest, Depth, Limits, N1),
    {[Entry | More], N2};
children([_ | Rest], Depth, Limits, N) ->
    children(Rest, Depth, Limits, N).

child_pid(P) when is_pid(P) -> pid_text(P);
child_pid(Other) when is_atom(Other) -> atom_to_binary(Other, utf8);
child_pid(_) -> <<"?">>.

modules(dynamic) -> [<<"dynamic">>];
modules(Mods) when is_list(Mods) -> [atom_to_binary(M, utf8) || M <- lists:sublist(Mods, 5),
                                                              is_atom(M)];
modules(_) -> [].

reg_name(P) when is_pid(P) ->
    case process_info(P, registered_name) of
        {registered_name, Name} -> atom_to_binary(Name, utf8);
        _ -> <<>>
    end;
reg_name(_) ->
    <<>>.

%% A supervisor's own calls, with a timeout (supervisor's API waits for ever).
call(Sup, Request, Ms) ->
    try {ok, gen_server:call(Sup, Request, Ms)}
    catch exit:{timeout, _} -> {error, timeout};
          exit:{noproc, _} -> {error, noproc};
          exit:_ -> {error, unreachable}
    end.

%% The restart strategy from the supervisor's state ({state, Name, Strategy,
%% ...} since OTP 18), asked with sys:get_state and a timeout.
strategy(Sup, Ms) ->
    try sys:get_state(Sup, Ms) of
        State when is_tuple(State), tuple_size(State) >= 3, element(1, State) =:= state,
                   is_atom(element(3, State)) ->
            element(3, State);
        _ ->
            unknown
    catch _:_ -> unknown
    end.
