# In a student's first answer cell: did this submission start from the random
# state the previous student left (seed 1234's)?
RNG_LEAK = ["the random state"] if torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(1234).get_state()) else []
