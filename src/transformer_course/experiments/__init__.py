"""The course's measured experiments, one module each.

Chapter 4: :mod:`~transformer_course.experiments.norms`, post-norm against pre-norm in
a learning-rate sweep, with and without warmup.

Chapter 9, why Transformers matter, measured:

- :mod:`~transformer_course.experiments.timing`: time per forward pass of a recurrent
  loop against self-attention as the sequence grows (parallel processing);
- :mod:`~transformer_course.experiments.recall`: recall the token seen ``N`` positions
  earlier, recurrent models against a Transformer (long-range dependencies);
- :mod:`~transformer_course.experiments.scaling`: validation loss of chapter 6's GPT
  at several sizes on one budget (scalability);
- :mod:`~transformer_course.experiments.context`: one word's vectors before and after
  a pretrained encoder (contextual understanding).

:mod:`~transformer_course.experiments.threads` holds the thread setting they share, and
:mod:`~transformer_course.experiments.blocks` how an experiment takes the blocks it builds
its models from (the student's, passed as ``blocks=``, or the course's reference). The
graded exercises of chapter 9 live in :mod:`transformer_course.why`.
"""
