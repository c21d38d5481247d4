%%% ===========================================================================
%%% beamside_ops_eval -- evaluate an expression: the Eval service of the
%%% control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}), the rules every operator tool follows and the text
%%% limits (depth, chars) are in beamside_ops's header.  eval is not put
%%% through beamside_ops_safety's check: what the expression does is the
%%% operator's call.
%%%
%%%   eval(Expr, Opts)             erl_scan/erl_parse/erl_eval in a spawned
%%%                                process: timeout_ms (5000, <= 60000),
%%%                                max_heap_words (4 Mi words), output of
%%%                                io:format captured (<= 64 KB)
%%% ===========================================================================
-module(beamside_ops_eval).

-export([eval/2]).
%% Spawned helpers (io capture).
-export([capture_loop/2]).

-import(beamside_ops, [int/5, text/2, truncate/2, bin/1, invalid/1, timeout/1,
                       bad_opts/0]).

-define(MAX_OUTPUT, 65536).

-type reply(T) :: beamside_ops:reply(T).

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

