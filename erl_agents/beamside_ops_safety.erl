%%% ===========================================================================
%%% beamside_ops_safety -- what an operator call may stop: the check that
%%% beamside_ops_procs runs before terminate/3 and terminate_shells/1 send an
%%% exit signal (eval is not checked).
%%% ===========================================================================
%%%
%%% Not a tool of its own (the sidecar does not call it): check_stop/2 answers
%%% ok or {refused, Why} for one process, protect_ctx/2 and may_stop/2 the
%%% same for many processes under one deadline.  The rules every operator
%%% tool follows are in beamside_ops's header.
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
-module(beamside_ops_safety).

-export([check_stop/2, protect_ctx/2, may_stop/2]).

-import(beamside_ops, [int/5, text/2, bounded/3]).

-define(CHECK_EVERY, 512).            % processes walked between two deadline checks
-define(HELPER_HEAP, beamside_ops:helper_heap()).
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

-type ctx() :: #{masters := #{pid() => atom()}, gls := map() | {unknown, non_neg_integer()},
                 deadline := integer(), caller := pid()}.
-export_type([ctx/0]).

%%% ---------------------------------------------------------------------------
%%% protection: what an operator call may stop (see "Stopping processes" above)

%% may_stop/2 in a helper with a deadline (check_ms) and a heap limit.
-spec check_stop(pid(), map()) -> ok | {refused, binary()}.
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

%% The context of one check (or of one terminate_shells run): the application
%% masters by pid, the group leaders, the deadline, a budget of looks.
-spec protect_ctx(integer(), pid()) -> ctx().
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
-spec may_stop(pid(), ctx()) -> ok | {refused, binary()}.
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

