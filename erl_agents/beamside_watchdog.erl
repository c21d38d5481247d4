%%% ===========================================================================
%%% beamside_watchdog -- removes beamside from a node its sidecars left.
%%% ===========================================================================
%%%
%%% A sidecar that goes without a goodbye (SIGKILL, network cut,
%%% net_kernel:disconnect on the node) cannot unload its modules.  The
%%% watchdog does it for it: one process per node, started by
%%% beamside_sysmon's init (start/2), registered as beamside_watchdog, told
%%% the set of sidecars beamside_sysmon watches (sidecars/2) and, at the end
%%% of beamside_sysmon's terminate/2, that everything it held was released
%%% (released/1).  It runs NO beamside code: its program is the expression
%%% in source/0, parsed with erl_scan/erl_parse and turned into a fun by
%%% erl_eval (stdlib), so the process executes erl_eval only and the
%%% modules it deletes and purges are never in use by it.  Its bindings are
%%% data only (pids, atoms, booleans).
%%%
%%% Lifecycle:
%%%   1. While beamside_sysmon lives: waits (a monitor, no polling).
%%%   2. beamside_sysmon gone (stopped on the nodedown of its last sidecar,
%%%      by detach, or killed): if it was killed before releasing, undoes
%%%      at once what its terminate/2 would have: turns off microstate
%%%      accounting when beamside turned it on (the only VM flag the VM does
%%%      not reset by itself: the system monitor and scheduler_wall_time are
%%%      released with the process) and removes beamside's handlers (step b
%%%      below).  Then, every 250 ms, until one of:
%%%        * a beamside_sysmon is registered again (a new attach: ours is
%%%          done, the new one started its own watchdog),
%%%        * no beamside module is loaded any more (the sidecar detached
%%%          cleanly and unloaded them),
%%%        * cancel (see below),
%%%      which end it quietly, or
%%%        * none of the sidecars of the watched set is connected,
%%%      which starts the cleanup.  It never cleans up while one of them is
%%%      still connected.
%%%   3. Cleanup, every step bounded (2 s per call into another process):
%%%        a. gives the registered beamside processes (beamside_events) 2 s
%%%           to stop by themselves (they do when beamside_sysmon exits),
%%%           then kills those left;
%%%        b. removes beamside's logger handlers (id `beamside' or a
%%%           beamside_* module) and the handlers with a beamside_* module
%%%           in alarm_handler, erl_signal_server and lager_event;
%%%        c. deletes every beamside_* module (beamside_test_* excepted) and
%%%           soft-purges it; a module still in use is retried for 3 s (a
%%%           collect helper finishing); then the processes running or
%%%           holding its old code are looked at once: those that are
%%%           beamside's own (registered under a beamside name, or spawned
%%%           by beamside code: initial call in a beamside_* module) are
%%%           killed and the module purged;
%%%           if any other process holds it (a user process blocked in a
%%%           call into beamside, say), it is never killed: the old code
%%%           is soft-purged once it lets go (tried every second for an
%%%           hour, the watchdog staying registered meanwhile).
%%%      then it exits (normal: nothing is logged).  Nothing it does logs
%%%      anything: every step is inside try/catch, it calls no io.
%%%
%%% guard(Sidecar): the same watchdog without a beamside_sysmon (step 1 is
%%% skipped), watching Sidecar only; the sidecar starts it right after it
%%% loaded the modules, so that dying before attach (or after a failed
%%% attach) leaves nothing either.  The attach replaces it.
%%%
%%% cancel(Timeout): a gen_server-style call `cancel' to the registered
%%% watchdog; it answers `ok' between two steps (never in the middle of one)
%%% and exits, so that the caller knows no deletion is under way.  The
%%% sidecar cancels it when it attaches to a node without a live
%%% beamside_sysmon (the old watchdog's work is replaced by the attach) and
%%% after a clean detach unloaded the modules; beamside_sysmon's init
%%% cancels any watchdog left before starting its own.
%%%
%%% Cost: one idle process while attached (about 88 KB: its program is
%%% held as erl_eval's abstract code; about 2 ms to start); after
%%% beamside_sysmon is gone, an erlang:loaded() scan and nodes(connected)
%%% every 250 ms until the cleanup (immediate when the sidecar went), which
%%% lasts tens of ms on a small node and is dominated by the soft purges on
%%% a big one (each checks every process for the old code: about 0.25 s a
%%% module at 100,000 processes); one walk of the processes only when a
%%% module stays in use 3 s.
%%% ===========================================================================
-module(beamside_watchdog).

-export([start/2, guard/1, sidecars/2, released/1, cancel/1, source/0]).

-define(NAME, beamside_watchdog).

%% Start the watchdog of the calling process (beamside_sysmon), after
%% cancelling any watchdog left from an earlier attach.
-spec start([node()], boolean()) -> {ok, pid()} | {error, term()}.
start(Sidecars, Msacc) ->
    ok = cancel(2000),
    spawn_watchdog(self(), Sidecars, Msacc).

%% Called by the sidecar right after it loaded the modules, before attach:
%% a sidecar that dies in between (or whose attach fails and who goes)
%% leaves no modules behind either.  A watchdog without beamside_sysmon,
%% watching Sidecar; replaced by the one beamside_sysmon starts at attach.
%% Nothing is done when beamside_sysmon runs (its watchdog is there).
-spec guard(node()) -> {ok, pid()} | {error, term()}.
guard(Sidecar) when is_atom(Sidecar) ->
    case whereis(beamside_sysmon) of
        undefined ->
            ok = cancel(2000),
            spawn_watchdog(undefined, [Sidecar], false);
        _ ->
            {error, attached}
    end.

spawn_watchdog(Sysmon, Sidecars, Msacc) ->
    try
        {ok, Tokens, _} = erl_scan:string(source()),
        {ok, Exprs} = erl_parse:parse_exprs(Tokens),
        Bindings = lists:foldl(fun({K, V}, B) -> erl_eval:add_binding(K, V, B) end,
                               erl_eval:new_bindings(),
                               [{'Sysmon', Sysmon}, {'Sidecars0', Sidecars},
                                {'Msacc', Msacc}, {'Name', ?NAME}]),
        {value, Fun, _} = erl_eval:exprs(Exprs, Bindings),
        Pid = spawn(Fun),
        try register(?NAME, Pid) of
            true -> Pid ! {?NAME, go}, {ok, Pid}
        catch error:badarg -> exit(Pid, kill), {error, name_taken}
        end
    catch C:R -> {error, {C, beamside_agent:reason(R)}}
    end.

-spec sidecars(pid() | undefined, [node()]) -> ok.
sidecars(undefined, _) -> ok;
sidecars(Pid, Sidecars) -> Pid ! {?NAME, sidecars, Sidecars}, ok.

-spec released(pid() | undefined) -> ok.
released(undefined) -> ok;
released(Pid) -> Pid ! {?NAME, released}, ok.

%% Stop the registered watchdog (if any) and wait until it is gone.
-spec cancel(timeout()) -> ok.
cancel(Timeout) ->
    case whereis(?NAME) of
        undefined ->
            ok;
        Pid ->
            MRef = erlang:monitor(process, Pid),
            _ = (catch gen_server:call(Pid, cancel, Timeout)),
            receive {'DOWN', MRef, process, Pid, _} -> ok
            after 1000 ->
                    exit(Pid, kill),
                    receive {'DOWN', MRef, process, Pid, _} -> ok
                    after 1000 -> ok
                    end
            end
    end.

%% The watchdog's program: an Erlang expression calling OTP modules only.
-spec source() -> string().
source() ->
    "fun() ->
       try
         receive {Name, go} -> ok after 5000 -> throw(cancelled) end,
         Cancel = fun(From) -> gen:reply(From, ok), throw(cancelled) end,
         %% between two steps: cancelled, or a new attach started meanwhile
         Check = fun() ->
                     receive {'$gen_call', From, cancel} -> Cancel(From)
                     after 0 -> ok
                     end,
                     case whereis(beamside_sysmon) of
                         P when is_pid(P) -> throw(cancelled);
                         _ -> ok
                     end
                 end,
         Ours = fun(A) when is_atom(A) ->
                        S = atom_to_list(A),
                        lists:prefix(\"beamside_\", S)
                            andalso not lists:prefix(\"beamside_test_\", S);
                   (_) -> false
                end,
         Mod = fun({M, _, _}) -> M; (_) -> undefined end,
         %% beamside's own: registered under a beamside name or spawned by
         %% beamside code (not a user process that called into it)
         OursProc = fun(P) ->
                        case erlang:process_info(P, [registered_name, initial_call]) of
                            [{registered_name, N}, {initial_call, IC}] ->
                                Ours(N) orelse Ours(Mod(IC));
                            _ -> false
                        end
                    end,
         Bounded = fun(F, T) ->
                       Me = self(), Tag = make_ref(),
                       {P, M} = spawn_monitor(fun() -> Me ! {Tag, catch F()} end),
                       receive {Tag, V} -> erlang:demonitor(M, [flush]), V;
                               {'DOWN', M, process, P, _} -> error
                       after T -> exit(P, kill), erlang:demonitor(M, [flush]), timeout
                       end
                   end,
         Loaded = fun() -> [M || M <- erlang:loaded(), Ours(M)] end,
         Names = fun() -> [N || N <- registered(), Ours(N), N =/= Name] end,
         %% Sysmon undefined: a guard (guard/1), loaded but not attached
         MRef = case is_pid(Sysmon) of
                    true -> erlang:monitor(process, Sysmon);
                    false -> make_ref()
                end,
         Watch = fun Watch(Sc, Rel) ->
                     receive
                         {'$gen_call', From, cancel} -> Cancel(From);
                         {Name, sidecars, Sc1} -> Watch(Sc1, Rel);
                         {Name, released} -> Watch(Sc, true);
                         {'DOWN', MRef, process, _, _} -> {Sc, Rel};
                         _ -> Watch(Sc, Rel)
                     end
                 end,
         Handler = fun({H, _}) -> H; (H) -> H end,
         RemoveHandlers =
             fun() ->
                 _ = Bounded(fun() ->
                                 [logger:remove_handler(Id)
                                  || #{id := Id} = C <- logger:get_handler_config(),
                                     Id =:= beamside
                                         orelse Ours(maps:get(module, C, undefined))]
                             end, 2000),
                 [begin
                      Check(),
                      case Bounded(fun() -> gen_event:which_handlers(Mgr) end, 2000) of
                          Hs when is_list(Hs) ->
                              [Bounded(fun() -> gen_event:delete_handler(Mgr, H, remove) end,
                                       2000)
                               || H <- Hs, Ours(Handler(H))];
                          _ -> ok
                      end
                  end || Mgr <- [alarm_handler, erl_signal_server, lager_event],
                         is_pid(whereis(Mgr))],
                 ok
             end,
         {Sidecars, Released} = case is_pid(Sysmon) of
                                    true -> Watch(Sidecars0, false);
                                    false -> {Sidecars0, true}
                                end,
         case Released of
             true -> ok;
             false ->
                 %% killed: what its terminate/2 would have undone, now
                 case Msacc of
                     true -> erlang:system_flag(microstate_accounting, false);
                     false -> ok
                 end,
                 RemoveHandlers()
         end,
         Wait = fun Wait() ->
                    Check(),
                    Connected = [N || N <- Sidecars, lists:member(N, erlang:nodes(connected))],
                    case {whereis(beamside_sysmon), Loaded(), Connected} of
                        {P, _, _} when is_pid(P) -> throw(cancelled);
                        {_, [], _} -> throw(cancelled);
                        {_, _, []} -> ok;
                        _ -> receive {'$gen_call', From, cancel} -> Cancel(From)
                             after 250 -> Wait()
                             end
                    end
                end,
         Wait(),
         %% a. beamside processes: they stop by themselves; else killed.
         Gone = fun Gone(0) -> [catch exit(P, kill) || N <- Names(), P <- [whereis(N)], is_pid(P)];
                    Gone(K) -> Check(),
                               case Names() of
                                   [] -> ok;
                                   _ -> receive after 50 -> Gone(K - 1) end
                               end
                end,
         Gone(40),
         %% b. handlers
         Check(),
         RemoveHandlers(),
         %% c. modules
         %% code:delete/1 of a module whose old code is still there logs an
         %% error (\"must be purged before deleting\"): only after a purge
         Unload = fun(M) ->
                      _ = code:soft_purge(M),
                      case erlang:module_loaded(M) andalso not erlang:check_old_code(M) of
                          true -> _ = code:delete(M), _ = code:soft_purge(M);
                          false -> ok
                      end,
                      not erlang:module_loaded(M) andalso not erlang:check_old_code(M)
                  end,
         Pending0 = [M || M <- Loaded(), begin Check(), not Unload(M) end],
         Retry = fun Retry(Ms, 0) -> Ms;
                     Retry([], _) -> [];
                     Retry(Ms, K) -> receive after 100 -> ok end,
                                     Check(),
                                     Retry([M || M <- Ms, not Unload(M)], K - 1)
                 end,
         Pending = Retry(Pending0, 30),
         Holders = [{M, [P || P <- erlang:processes(), P =/= self(),
                              (catch erlang:check_process_code(P, M)) =:= true]}
                    || M <- Pending],
         Held = [M || {M, Ps} <- Holders,
                      case lists:all(OursProc, Ps) of
                          true ->
                              Refs = [erlang:monitor(process, P) || P <- Ps],
                              [exit(P, kill) || P <- Ps],
                              [receive {'DOWN', R, process, _, _} -> ok after 1000 -> ok end
                               || R <- Refs],
                              not Unload(M);
                          false ->
                              true
                      end],
         %% d. old code a user process still runs or holds: purged softly
         %% once it lets go (every second, for an hour at most).
         Linger = fun Linger([], _) -> ok;
                      Linger(_, 0) -> ok;
                      Linger(Ms, K) ->
                          receive {'$gen_call', From, cancel} -> Cancel(From)
                          after 1000 -> ok
                          end,
                          case whereis(beamside_sysmon) of
                              P when is_pid(P) -> throw(cancelled);
                              _ -> Linger([M || M <- Ms, not Unload(M)], K - 1)
                          end
                  end,
         Linger(Held, 3600),
         ok
       catch _:_ -> ok
       end
     end.".
