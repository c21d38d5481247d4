%%% ===========================================================================
%%% beamside_ops -- the operator tools behind the gRPC control plane: the
%%% rules they all follow and the helpers they share.
%%% ===========================================================================
%%%
%%% The tools live in one module per concern, each with its manual in its
%%% header (this header holds what is common to all of them):
%%%   beamside_ops_node     node_info/1: system info, applications, release
%%%   beamside_ops_procs    processes: top/1, process/2, terminate/3, gc/2,
%%%                         terminate_shells/1
%%%   beamside_ops_safety   what terminate/3 and terminate_shells/1 may stop
%%%                         (the safety check run before every exit signal)
%%%   beamside_ops_ets      ETS: tables/1, read_table/3
%%%   beamside_ops_code     loaded code: modules/1, soft_purge/2
%%%   beamside_ops_env      application env: get_env/3, set_env/4, env_dump/2
%%%   beamside_ops_eval     eval/2
%%%   beamside_ops_apps     applications and supervision trees: app_tree/2
%%%   beamside_ops_ports    ports and sockets: ports/1
%%%   beamside_ops_trace    call and message traces: start/2, poll/2, stop/1
%%%                         (a bounded tracer process per trace)
%%%   beamside_ops_alloc    memory allocators, carriers against blocks: allocators/1
%%% This module runs no tool itself: it has the option clamping, the bounded
%%% printing of terms, the helper process with a deadline, and the error
%%% shape the others use.
%%%
%%% Every tool function is called by the sidecar through rex (one rpc per
%%% gRPC call) and answers {ok, Result} or {error, {Kind, Message}}, where
%%% Kind tells the sidecar which status to give the client:
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
%%% Options (Opts) are a map; all its keys are optional.
%%%
%%% Text limits: depth (20, <= 100) and chars (4096, <= 65536) options apply
%%% to every printed term, except where a function says otherwise.
%%% ===========================================================================
-module(beamside_ops).

%% Used by the beamside_ops_* modules.
-export([int/5, text/2, truncate/2, bin/1, pid_text/1, existing_atom/1,
         bounded/3, run/3, helper_heap/0,
         invalid/1, not_found/1, precondition/1, timeout/1, internal/1, bad_opts/0]).
-export_type([reply/1, failure/0]).

-define(HELPER_HEAP, 16#800000).      % words (64 MB) for helpers that copy terms

-type failure() :: {error, {atom(), binary()}}.
-type reply(T) :: {ok, T} | failure().

%%% ---------------------------------------------------------------------------
%%% helpers

%% The heap limit (words) of the helpers that copy terms of another process.
-spec helper_heap() -> pos_integer().
helper_heap() -> ?HELPER_HEAP.

%% Text from the client as an atom that exists already (looking creates none).
-spec existing_atom(term()) -> {ok, atom()} | error.
existing_atom(B) when is_binary(B) ->
    try {ok, binary_to_existing_atom(B, utf8)}
    catch error:badarg -> error
    end;
existing_atom(_) ->
    error.

%% Run Fun in a fresh process, killed after Timeout ms: {ok, Value} |
%% {error, {raised, Class, Reason}} | {error, {exit, Why}} | {error, timeout}.
-spec bounded(fun(() -> term()), timeout(), [term()]) ->
          {ok, term()} | {error, timeout | {exit, term()} | {raised, atom(), term()}}.
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

%% bounded/3 as a reply for the sidecar (Fun's own {error, {Kind, Msg}} as is).
-spec run(fun(() -> term()), timeout(), [term()]) -> reply(term()).
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

%% Option Key of Opts clamped to [Min, Max]; Default when absent or not an integer.
-spec int(atom(), map(), integer(), integer(), integer()) -> integer().
int(Key, Opts, Default, Min, Max) ->
    case maps:get(Key, Opts, Default) of
        V when is_integer(V) -> max(Min, min(Max, V));
        _ -> Default
    end.

%% Term as bounded text: ~0tP with depth, io_lib's chars_limit, then a hard cut.
-spec text(term(), map()) -> binary().
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

%% Bin cut to at most Max bytes ("..." at the end, never in a UTF-8 character).
-spec truncate(binary(), non_neg_integer()) -> binary().
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

-spec pid_text(term()) -> binary().
pid_text(P) when is_pid(P) -> list_to_binary(pid_to_list(P));
pid_text(P) when is_port(P) -> list_to_binary(port_to_list(P));
pid_text(_) -> <<>>.

%% A binary, an atom or chardata as a binary (printed when it is none of those).
-spec bin(term()) -> binary().
bin(B) when is_binary(B) -> B;
bin(A) when is_atom(A) -> atom_to_binary(A, utf8);
bin(L) ->
    try unicode:characters_to_binary(L) of
        B when is_binary(B) -> B;
        _ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    catch _:_ -> iolist_to_binary(io_lib:format("~0tp", [L]))
    end.

%% The error shape (see the header).
-spec invalid(binary()) -> failure().
invalid(Msg) -> {error, {invalid, Msg}}.
-spec not_found(binary()) -> failure().
not_found(Msg) -> {error, {not_found, Msg}}.
-spec precondition(binary()) -> failure().
precondition(Msg) -> {error, {precondition, Msg}}.
-spec timeout(binary()) -> failure().
timeout(Msg) -> {error, {timeout, Msg}}.
-spec internal(binary()) -> failure().
internal(Msg) -> {error, {internal, Msg}}.
-spec bad_opts() -> failure().
bad_opts() -> invalid(<<"bad arguments">>).
