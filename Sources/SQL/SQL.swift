/// The SQL lexer and classifier; see Lexer.swift.
