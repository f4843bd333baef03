# longattn_warnings(<target>): the project's warning set, -Werror when asked.
function(longattn_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${LONGATTN_WERROR}>>:-Werror>)
endfunction()
