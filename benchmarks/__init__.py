"""segrun's benchmarks: `segrun bench ops` and `segrun bench train`. Speed claims in the README
are only what these measure; results/ holds the committed runs, one JSON and one Markdown file
per device and date."""
