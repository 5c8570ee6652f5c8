return string.format('%d', clock(ARGV[1]))
