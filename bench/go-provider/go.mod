module wcp-bench/go-provider

go 1.19
