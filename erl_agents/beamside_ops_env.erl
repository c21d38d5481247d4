%%% ===========================================================================
%%% beamside_ops_env -- application environment: the Config service of the
%%% control plane.
%%% ===========================================================================
%%%
%%% Called by the sidecar through rex; the reply shape ({ok, _} | {error,
%%% {Kind, Message}}), the rules every operator tool follows and the text
%%% limits (depth, chars) are in beamside_ops's header.
%%%
%%% Functions (Opts is a map; all its keys optional):
%%%   get_env(App, Key | all, Opts)  application env, printed; secrets
%%%                                redacted (beamside_redact) unless
%%%                                reveal => true (the sidecar passes it
%%%                                only for an operator's audited request);
%%%                                each entry says whether it was redacted
%%%   set_env(App, Key, Value, Opts)  Value is Erlang term text (parsed, never
%%%                                evaluated); persistent => true|false; the
%%%                                previous and new values come back
%%%                                redacted, always (the reply goes to logs
%%%                                and audit records), and a value that does
%%%                                not parse is not quoted back when the key
%%%                                or the value names a secret
%%%   env_dump(Apps | all, Opts)   #{App => #{Key => #{hash, text}}} for
%%%                                comparing nodes (<= 200 apps, 500 keys);
%%%                                hash is erlang:phash2 of the value itself
%%%                                (equal values, equal hashes), text is
%%%                                redacted
%%%
%%% A value whose key itself names a secret is printed as the bare marker
%%% text (<<"<redacted sha256:xxxxxx>">>, no quotes); secrets inside a value
%%% appear in its printed text as the quoted marker string.
%%% ===========================================================================
-module(beamside_ops_env).

-export([get_env/3, set_env/4, env_dump/2]).

-import(beamside_ops, [int/5, text/2, bin/1, existing_atom/1, invalid/1, not_found/1,
                       internal/1, bad_opts/0]).

-type reply(T) :: beamside_ops:reply(T).

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
            Reveal = maps:get(reveal, Opts, false) =:= true,
            {ok, #{app => App, loaded => app_loaded(A),
                   entries => [entry(K, V, Reveal, Opts) || {K, V} <- Env]}}
    end;
get_env(_, _, _) ->
    bad_opts().

entry(K, V, true, Opts) ->
    #{key => atom_to_binary(K, utf8), value => text(V, Opts), redacted => false};
entry(K, V, false, Opts) ->
    Shown = shown(K, V),
    #{key => atom_to_binary(K, utf8), value => value_text(Shown, Opts),
      redacted => Shown =/= V}.

%% V as it may be shown: redacted as a value of key K.
shown(K, V) ->
    {_, Shown} = beamside_redact:redact({K, V}),
    Shown.

%% The printed value; a value replaced whole is the bare marker text.
value_text(Shown, Opts) ->
    case beamside_redact:is_marker(Shown) of
        true -> list_to_binary(Shown);
        false -> text(Shown, Opts)
    end.

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
                           {ok, P} -> value_text(shown(K, P), Opts);
                           undefined -> undefined
                       end,
            Persistent = maps:get(persistent, Opts, false) =:= true,
            case application:set_env(A, K, V, [{persistent, Persistent}, {timeout, 5000}]) of
                ok -> {ok, #{previous => Previous, value => value_text(shown(K, V), Opts)}};
                Other -> internal(text(beamside_redact:redact(Other), Opts))
            end;
        {error, Msg} ->
            case beamside_redact:is_secret_key(Key) orelse
                beamside_redact:mentions_secret(Value) of
                true ->
                    invalid(<<"value is not an Erlang term (the parser's message is not "
                              "shown: the key or the value names a secret)">>);
                false ->
                    invalid(<<"value is not an Erlang term: ",
                              (bin(beamside_redact:redact(Msg)))/binary>>)
            end
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
                              #{hash => erlang:phash2(V),
                                text => value_text(shown(K, V), TOpts)}}
                             || {K, V} <- lists:sublist(lists:sort(application:get_all_env(A)),
                                                        500), is_atom(K)])}
            || A <- lists:sublist(Names, 200)],
    {ok, maps:from_list(Dump)};
env_dump(_, _) ->
    bad_opts().
