from fineproofs.replies import split_reasoning, strip_self_evaluation


def test_think_block_split():
    s = split_reasoning("<think>\nlet me try\n</think>\n\n**Proof.** Done.")
    assert s.reasoning == "let me try" and s.proof == "**Proof.** Done." and not s.unterminated


def test_template_opened_think_block():
    # Qwen3-Thinking templates open <think> in the prompt: the reply only closes it
    s = split_reasoning("reasoning here</think>The proof.")
    assert s.reasoning == "reasoning here" and s.proof == "The proof."


def test_unterminated_reasoning():
    s = split_reasoning("<think>still thinking when the budget ran out")
    assert s.unterminated and s.proof == ""


def test_no_thinking_tags():
    s = split_reasoning("Just a proof.")
    assert s.reasoning == "" and s.proof == "Just a proof."


def test_self_evaluation_stripped():
    proof = "Step 1. ...\nHence done.\n\n## Self Evaluation\nHere is my evaluation of the solution: score 1"
    assert strip_self_evaluation(proof) == "Step 1. ...\nHence done."
    assert strip_self_evaluation("No evaluation here.") == "No evaluation here."
