"""Operations that make new embeddings: merge and edit (:mod:`.ops`), the weight-expression
language (:mod:`.expr`), porting between families (:mod:`.port`), and provenance records."""
