package build

// defaultRunner runs RUN steps when Options.Run is nil.
var defaultRunner Runner
