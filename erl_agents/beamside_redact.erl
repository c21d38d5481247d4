%%% ===========================================================================
%%% beamside_redact -- the one redaction rule of the agents: secrets never
%%% leave the node in clear.
%%% ===========================================================================
%%%
%%% Every agent function that prints or keeps a value that may hold a secret
%%% (application env, a process's state, dictionary and messages, config
%%% change events, the env views kept between collects) passes it through
%%% redact/1 first.  Pure functions: no process, no table, nothing loaded.
%%%
%%% redact(Term) -> Term
%%% redact(Term, Opts) -> Term
%%%   Term with its secrets replaced by a marker:
%%%     * the VALUE of every {Key, Value} 2-tuple (proplist entry, Elixir
%%%       keyword entry, any pair) and of every map entry whose key names a
%%%       secret (is_secret_key/1), at any depth: [{ssl_options, [{password,
%%%       "x"}, {keyfile, "/k.pem"}]}] -> [{ssl_options, [{password, M1},
%%%       {keyfile, M2}]}]; the atoms true, false, undefined and nil are
%%%       kept (they hold no secret: {fail_if_no_peer_cert, true});
%%%     * in binaries and flat printable charlists, the parts shaped like
%%%       secrets: PEM blocks (`-----BEGIN X-----' through the matching
%%%       `-----END X-----', or to the end when there is no END) and the
%%%       password of a URL's userinfo (`scheme://user:PASS@host': user and
%%%       host are kept).  Only the first ?SCAN_BYTES bytes of a binary (or
%%%       characters of a charlist) are scanned: beyond them nothing is
%%%       printed anyway (every printed text is cut far earlier).
%%%   Lists (improper ones too), tuples and maps are walked to a nesting
%%%   depth of `depth' (Opts, default ?DEPTH) visiting at most `budget'
%%%   (default ?BUDGET) terms; what lies deeper, or after the budget is spent,
%%%   is replaced by the marker "<redacted: beyond limits>" (the rest of a
%%%   list by one such element): a value is never shown unexamined.
%%%   Never raises: anything odd makes the whole term one marker.  Redacting
%%%   a redacted term changes nothing (a marker is kept as it is).
%%%
%%% The marker is the charlist "<redacted sha256:xxxxxx>" (printed with ~p
%%% as "<redacted sha256:xxxxxx>"; inside a binary or a charlist the same
%%% text without quotes): the first 6 hex digits of HMAC-SHA256(Key,
%%% term_to_binary(Value)) with the node's cookie as Key, so that a changed
%%% secret shows a changed marker and the same value the same marker on
%%% every node of a cluster, while a dictionary of common passwords is of no
%%% use without the cookie.  The crypto module is used only when the node
%%% has loaded it already (loading it would leave a module behind:
%%% beamside leaves no residue), and only for values of at most ?HASH_BYTES
%%% bytes in the external format; otherwise "<redacted phash2:xxxxxx>"
%%% (erlang:phash2/2 of {Cookie, Value}, 24 bits).  A charlist, not an atom:
%%% a marker per secret value would fill the atom table.
%%%
%%% redact_exprs(Exprs) -> Exprs
%%%   Parsed Erlang expressions (erl_parse abstract format: what a shell
%%%   keeps of each command) made safe to print: when an atom, a variable or
%%%   a string literal of the expression names a secret
%%%   (application:set_env(rabbit, default_pass, <<"x">>), Password = "x"),
%%%   every other string literal (in binaries too) is replaced by its
%%%   marker; otherwise string literals only lose their PEM blocks and URL
%%%   passwords.  The caller bounds the size of Exprs; never raises (Exprs
%%%   unchanged if they are not abstract format).
%%%
%%% is_secret_key(Key) -> boolean()
%%%   Whether Key (atom, binary or charlist of at most ?KEY_CHARS characters)
%%%   names a secret: its lower-cased name contains one of ?SECRET_WORDS
%%%   (`pass' covers password, passwd, default_pass; `key' covers keyfile,
%%%   api_key, private_key, secret_key_base...).  False positives (keypos,
%%%   auth_backends) are accepted: showing less is the safe side.
%%%
%%% mentions_secret(Text) -> boolean()
%%%   Whether a binary of any length contains one of ?SECRET_WORDS (case
%%%   insensitive): for text that cannot be redacted by structure (a value
%%%   that did not parse, quoted back in an error).
%%%
%%% is_marker(Term) -> boolean()
%%%   Whether Term is a marker made here (a value redact/1 replaced).
%%%
%%% marker(Value) -> string()
%%%   The marker of Value (see above).
%%%
%%% Cost: one walk of the term (bounded by budget), a binary:match per
%%% binary or printable charlist, and per secret found one term_to_binary
%%% and one HMAC (or phash2) of that value.  Opts: depth (?DEPTH, 1..1000),
%%% budget (?BUDGET, 1..10000000).
%%% ===========================================================================
-module(beamside_redact).

-export([redact/1, redact/2, is_secret_key/1, mentions_secret/1, is_marker/1, marker/1]).
-export([redact_exprs/1]).

-define(DEPTH, 32).
-define(BUDGET, 200000).
-define(SCAN_BYTES, 1048576).
-define(HASH_BYTES, 1048576).
-define(KEY_CHARS, 256).
-define(URL_AUTHORITY, 2048).       % bytes looked at after "://" for a '@'
-define(BEYOND, "<redacted: beyond limits>").
-define(SECRET_WORDS, [<<"pass">>, <<"pwd">>, <<"secret">>, <<"token">>, <<"key">>,
                       <<"private">>, <<"credential">>, <<"cookie">>, <<"auth">>,
                       <<"cert">>, <<"salt">>, <<"signature">>, <<"session">>,
                       <<"bearer">>, <<"userinfo">>]).

%%% ---------------------------------------------------------------------------
%%% API

-spec redact(term()) -> term().
redact(Term) ->
    redact(Term, #{}).

-spec redact(term(), map()) -> term().
redact(Term, Opts) ->
    try
        Depth = opt(depth, Opts, ?DEPTH, 1, 1000),
        Budget = opt(budget, Opts, ?BUDGET, 1, 10000000),
        {Out, _} = walk(Term, Depth, Budget),
        Out
    catch _:_ ->
            safe_marker(Term)
    end.

-spec is_secret_key(term()) -> boolean().
is_secret_key(K) when is_atom(K) ->
    secret_name(atom_to_binary(K, utf8));
is_secret_key(K) when is_binary(K), byte_size(K) =< ?KEY_CHARS * 4 ->
    secret_name(K);
is_secret_key(K) when is_list(K) ->
    try
        case short_chars(K, ?KEY_CHARS) of
            true ->
                case unicode:characters_to_binary(K) of
                    B when is_binary(B) -> secret_name(B);
                    _ -> false
                end;
            false ->
                false
        end
    catch _:_ -> false
    end;
is_secret_key(_) ->
    false.

-spec redact_exprs(term()) -> term().
redact_exprs(Es) ->
    try
        Hide = names_secret(Es),
        literals(Es, Hide)
    catch _:_ ->
            Es
    end.

%% Whether an atom, a variable or a string literal names a secret.
names_secret({atom, _, A}) when is_atom(A) -> is_secret_key(A);
names_secret({var, _, V}) when is_atom(V) -> is_secret_key(V);
names_secret({string, _, S}) when is_list(S) -> is_secret_key(S);
names_secret(T) when is_tuple(T) -> names_secret(tuple_to_list(T));
names_secret([H | T]) -> names_secret(H) orelse names_secret(T);
names_secret(_) -> false.

literals({string, A, S}, Hide) when is_list(S) ->
    case Hide andalso not is_secret_key(S) of
        true -> {string, A, safe_marker(S)};
        false -> {string, A, scan_chars(S)}
    end;
literals(T, Hide) when is_tuple(T) ->
    list_to_tuple(literals(tuple_to_list(T), Hide));
literals([H | T], Hide) ->
    [literals(H, Hide) | literals(T, Hide)];
literals(T, _Hide) ->
    T.

-spec mentions_secret(term()) -> boolean().
mentions_secret(Text) when is_binary(Text) ->
    try secret_name(Text) catch _:_ -> true end;
mentions_secret(_) ->
    false.

-spec is_marker(term()) -> boolean().
is_marker("<redacted" ++ Rest) ->
    try Rest =/= [] andalso lists:last(Rest) =:= $> andalso io_lib:printable_latin1_list(Rest)
    catch _:_ -> false
    end;
is_marker(_) ->
    false.

-spec marker(term()) -> string().
marker(Value) ->
    safe_marker(Value).

%%% ---------------------------------------------------------------------------
%%% the walk: walk(Term, DepthLeft, Budget) -> {Term', BudgetLeft}

walk(T, _D, B) when is_atom(T); is_number(T); is_pid(T); is_port(T); is_reference(T);
                    is_function(T) ->
    {T, B - 1};
walk(T, _D, B) when is_binary(T) ->
    {scan_bin(T), B - 1};
walk(T, _D, B) when is_bitstring(T) ->
    {T, B - 1};
walk([], _D, B) ->
    {[], B - 1};
walk(_T, D, B) when D =< 0; B =< 0 ->
    {?BEYOND, max(B, 0)};
walk(L, D, B) when is_list(L) ->
    case io_lib:printable_unicode_list(L) of
        true -> {scan_chars(L), B - 1};
        false -> walk_list(L, D - 1, B - 1, [])
    end;
walk({K, V}, D, B) ->
    case is_secret_key(K) of
        true ->
            {{K, hide(V)}, B - 1};
        false ->
            {K1, B1} = walk(K, D - 1, B - 1),
            {V1, B2} = walk(V, D - 1, B1),
            {{K1, V1}, B2}
    end;
walk(T, D, B) when is_tuple(T) ->
    {L, B1} = walk_list(tuple_to_list(T), D - 1, B - 1, []),
    {list_to_tuple(L), B1};
walk(M, D, B) when is_map(M) ->
    {Pairs, B1} = maps:fold(fun(K, _V, {Acc, Bx}) when Bx =< 0 ->
                                    {[{K, ?BEYOND} | Acc], 0};
                               (K, V, {Acc, Bx}) ->
                                    case is_secret_key(K) of
                                        true ->
                                            {[{K, hide(V)} | Acc], Bx - 1};
                                        false ->
                                            {K1, By} = walk(K, D - 1, Bx - 1),
                                            {V1, Bz} = walk(V, D - 1, By),
                                            {[{K1, V1} | Acc], Bz}
                                    end
                            end, {[], B - 1}, M),
    {maps:from_list(Pairs), B1};
walk(T, _D, B) ->
    {T, B - 1}.

%% The elements of a list (its improper tail walked as a term); once the
%% budget is spent the rest of the list is one ?BEYOND element.
walk_list([], _D, B, Acc) ->
    {lists:reverse(Acc), B};
walk_list([_ | _], _D, B, Acc) when B =< 0 ->
    {lists:reverse(Acc, [?BEYOND]), 0};
walk_list([H | T], D, B, Acc) ->
    {H1, B1} = walk(H, D, B),
    walk_list(T, D, B1, [H1 | Acc]);
walk_list(Tail, D, B, Acc) ->
    {T1, B1} = walk(Tail, D, B),
    {lists:reverse(Acc, T1), B1}.

%%% ---------------------------------------------------------------------------
%%% secrets in text: PEM blocks, URL passwords

scan_chars(L) ->
    case unicode:characters_to_binary(L) of
        Bin when is_binary(Bin) ->
            case scan_bin(Bin) of
                Bin -> L;
                New -> unicode:characters_to_list(New)
            end;
        _ ->
            L
    end.

scan_bin(B) when byte_size(B) < 8 ->
    B;
scan_bin(B) when byte_size(B) > ?SCAN_BYTES ->
    <<Head:?SCAN_BYTES/binary, Rest/binary>> = B,
    case scan_bin(Head) of
        Head -> B;
        New -> <<New/binary, Rest/binary>>
    end;
scan_bin(B) ->
    urls(pem(B)).

%% Every PEM block (BEGIN through END, or to the end) as one marker.
pem(B) ->
    case binary:match(B, <<"-----BEGIN ">>) of
        nomatch ->
            B;
        {S, L} ->
            Size = byte_size(B),
            From = S + L,
            End = case binary:match(B, <<"-----END ">>, [{scope, {From, Size - From}}]) of
                      nomatch ->
                          Size;
                      {E, EL} ->
                          case binary:match(B, <<"-----">>,
                                            [{scope, {E + EL, Size - E - EL}}]) of
                              nomatch -> Size;
                              {F, FL} -> F + FL
                          end
                  end,
            Block = binary:part(B, S, End - S),
            Post = pem(binary:part(B, End, Size - End)),
            Mark = list_to_binary(safe_marker(Block)),
            <<(binary:part(B, 0, S))/binary, Mark/binary, Post/binary>>
    end.

%% The password of every `scheme://user:PASS@host' (user and host kept).
urls(B) ->
    case binary:matches(B, <<"://">>) of
        [] ->
            B;
        Found ->
            Ranges = lists:append([url_pass(B, P + L) || {P, L} <- Found]),
            replace(B, Ranges, 0, [])
    end.

%% [{Start, Len}] of the password after "://" at Start, or [].
url_pass(B, Start) ->
    Size = byte_size(B),
    Scope = {Start, min(?URL_AUTHORITY, Size - Start)},
    Stops = [<<"@">>, <<"/">>, <<"?">>, <<"#">>, <<" ">>, <<"\t">>, <<"\r">>, <<"\n">>,
             <<"\"">>, <<"'">>, <<"<">>, <<">">>],
    case Scope of
        {_, 0} ->
            [];
        _ ->
            case binary:match(B, Stops, [{scope, Scope}]) of
                {At, 1} ->
                    case binary:at(B, At) of
                        $@ ->
                            case binary:match(B, <<":">>, [{scope, {Start, At - Start}}]) of
                                {C, 1} when At - C - 1 > 0 -> [{C + 1, At - C - 1}];
                                _ -> []
                            end;
                        _ ->
                            []
                    end;
                _ ->
                    []
            end
    end.

replace(B, [], Pos, Acc) ->
    case Acc of
        [] -> B;
        _ -> iolist_to_binary(lists:reverse(Acc, [binary:part(B, Pos, byte_size(B) - Pos)]))
    end;
replace(B, [{S, L} | More], Pos, Acc) when S >= Pos ->
    Mark = list_to_binary(safe_marker(binary:part(B, S, L))),
    replace(B, More, S + L, [Mark, binary:part(B, Pos, S - Pos) | Acc]);
replace(B, [_ | More], Pos, Acc) ->
    replace(B, More, Pos, Acc).

%%% ---------------------------------------------------------------------------
%%% helpers

secret_name(Bin) ->
    Lower = << <<(lower(C))>> || <<C>> <= Bin >>,
    binary:match(Lower, ?SECRET_WORDS) =/= nomatch.

lower(C) when C >= $A, C =< $Z -> C + 32;
lower(C) -> C.

%% A proper list of at most N characters (integers).
short_chars([], _N) -> true;
short_chars(_, 0) -> false;
short_chars([C | T], N) when is_integer(C), C >= 0 -> short_chars(T, N - 1);
short_chars(_, _) -> false.

%% A secret's marker; a marker stays as it is (redacting twice changes
%% nothing), and so do the atoms that hold no secret (fail_if_no_peer_cert
%% => true, an unset Elixir option: nil).
hide(V) when V =:= true; V =:= false; V =:= undefined; V =:= nil ->
    V;
hide(V) ->
    case is_marker(V) of
        true -> V;
        false -> safe_marker(V)
    end.

safe_marker(Value) ->
    try "<redacted " ++ digest(Value) ++ ">"
    catch _:_ -> "<redacted>"
    end.

digest(Value) ->
    Cookie = case erlang:get_cookie() of
                 C when is_atom(C) -> atom_to_binary(C, utf8);
                 _ -> <<>>
             end,
    case erlang:module_loaded(crypto) andalso erlang:external_size(Value) =< ?HASH_BYTES of
        true ->
            try crypto:mac(hmac, sha256, Cookie, term_to_binary(Value)) of
                <<D:24, _/binary>> -> "sha256:" ++ hex6(D)
            catch _:_ ->
                    "phash2:" ++ hex6(erlang:phash2({Cookie, Value}, 1 bsl 24))
            end;
        false ->
            "phash2:" ++ hex6(erlang:phash2({Cookie, Value}, 1 bsl 24))
    end.

hex6(N) ->
    [lower(C) || C <- lists:flatten(io_lib:format("~6.16.0b", [N]))].

opt(Key, Opts, Default, Min, Max) ->
    case maps:get(Key, Opts, Default) of
        V when is_integer(V) -> max(Min, min(Max, V));
        _ -> Default
    end.
